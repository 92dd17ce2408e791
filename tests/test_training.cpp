// The training tool: configs and overrides, the learning-rate schedule, the
// loss arithmetic, TensorBoard event framing, a few-step run on a tiny
// dataset, kill-and-resume, and evaluation of a checkpoint.

#include <diffstride/train/config.h>
#include <diffstride/train/event_writer.h>
#include <diffstride/train/train_step.h>
#include <diffstride/train/trainer.h>

#include "support/tiny_run.h"
#include "test_helpers.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <random>

namespace fs = std::filesystem;
using diffstride::TrainConfig;
using diffstride_test::expect_error_containing;
using diffstride_test::metrics_without_rate;
using diffstride_test::tiny_config;
using diffstride_test::write_tiny_idx;

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST(TrainConfig, ShippedConfigsParseAndTheDefaultIsFashionMnist) {
  const auto defaults = diffstride::load_train_config("");
  EXPECT_EQ(defaults.data.dataset, "fashion_mnist");
  EXPECT_EQ(defaults.model.pooling, "diffstride");
  const auto shipped = diffstride::load_train_config(
      DIFFSTRIDE_SOURCE_DIR "/configs/fashion_mnist.toml");
  EXPECT_EQ(diffstride::to_toml(shipped), diffstride::to_toml(defaults));
  const auto cifar10 = diffstride::load_train_config(DIFFSTRIDE_SOURCE_DIR
                                                     "/configs/cifar10.toml");
  EXPECT_EQ(cifar10.model.factory, "resnet18");
  EXPECT_EQ(cifar10.data.mixup_alpha, 0.2);
  EXPECT_EQ(cifar10.loss.label_smoothing, 0.2);
  EXPECT_EQ(cifar10.optimizer.boundaries,
            (std::vector<int64_t>{400, 18000, 32000}));
  EXPECT_EQ(cifar10.train.epochs, 400);
  const auto cifar100 = diffstride::load_train_config(DIFFSTRIDE_SOURCE_DIR
                                                      "/configs/cifar100.toml");
  EXPECT_EQ(cifar100.data.dataset, "cifar100");
  // The resolved copy a run writes reads back to the same config.
  EXPECT_EQ(diffstride::to_toml(
                diffstride::parse_train_config(diffstride::to_toml(cifar10))),
            diffstride::to_toml(cifar10));
}

TEST(TrainConfig, OverridesSetKeysOfEveryType) {
  const auto c = diffstride::load_train_config(
      DIFFSTRIDE_SOURCE_DIR "/configs/cifar10.toml",
      {"model.pooling=spectral",
       "model.strides=1,1,3,2x3,3",
       "data.batch_size=64",
       "loss.weight_decay=0",
       "data.augment=true",
       "model.upper_limit_stride=5",
       "optimizer.boundaries=[10, 20]",
       "optimizer.values=[0.1, 0.2, 0.3]"});
  EXPECT_EQ(c.model.pooling, "spectral");
  ASSERT_EQ(c.model.strides.size(), 5u);
  EXPECT_EQ((*c.model.strides[2])[0], 3.0);
  EXPECT_EQ((*c.model.strides[3])[0], 2.0);
  EXPECT_EQ((*c.model.strides[3])[1], 3.0);
  EXPECT_EQ(c.data.batch_size, 64);
  EXPECT_EQ(c.loss.weight_decay, 0.0);
  EXPECT_TRUE(c.data.augment);
  EXPECT_EQ(c.model.upper_limit_stride, 5.0);
  EXPECT_EQ(c.optimizer.values.size(), 3u);
}

TEST(TrainConfig, EveryListKeyTakesAnArrayOneValueOrACommaString) {
  const auto load = [](const std::string& item) {
    return diffstride::load_train_config("", {item});
  };
  EXPECT_EQ(load("model.filters=8,8,8").model.filters,
            (std::vector<int64_t>{8, 8, 8}));
  EXPECT_EQ(load("model.filters=[8, 8, 8]").model.filters,
            (std::vector<int64_t>{8, 8, 8}));
  EXPECT_EQ(load("model.filters=12").model.filters, (std::vector<int64_t>{12}));
  EXPECT_EQ(load("model.id_only=0, 2").model.id_only,
            (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(load("model.id_only=").model.id_only.empty());
  EXPECT_EQ(diffstride::load_train_config(
                "", {"optimizer.boundaries=10,20", "optimizer.values=3,2,1"})
                .optimizer.boundaries,
            (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(diffstride::load_train_config(
                "", {"optimizer.boundaries=10", "optimizer.values=0.5,0.25"})
                .optimizer.values,
            (std::vector<double>{0.5, 0.25}));
  const auto strides = load("model.strides=2").model.strides;
  ASSERT_EQ(strides.size(), 1u);
  EXPECT_EQ((*strides[0])[0], 2.0);
  EXPECT_EQ((*strides[0])[1], 2.0);
  expect_error_containing([&] { load("model.filters=8,x,8"); },
                          "model.filters: expected a list of integers");
}

TEST(TrainConfig, ReferenceTableListsEveryKeyAndTheReadmeShowsIt) {
  const std::string table = diffstride::train_config_reference();
  // Every key of a written config appears, once, with its type.
  const std::string written = diffstride::to_toml(
      diffstride::load_train_config("", {"model.upper_limit_stride=4"}));
  std::istringstream lines(written);
  std::string line, section;
  int keys = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("[", 0) == 0) {
      section = line.substr(1, line.find(']') - 1);
    } else if (const auto eq = line.find(" = "); eq != std::string::npos) {
      const std::string row =
          "| `" + section + "." + line.substr(0, eq) + "` |";
      EXPECT_NE(table.find(row), std::string::npos) << row;
      ++keys;
    }
  }
  EXPECT_EQ(keys, 45);  // the keys of docs/training.md and docs/data.md
  EXPECT_NE(table.find("| `model.filters` | list of integers |"),
            std::string::npos);
  EXPECT_NE(table.find("| `train.epochs` | integer | `400` |"),
            std::string::npos);
  // The README's table is this one, verbatim.
  EXPECT_NE(read_text(DIFFSTRIDE_SOURCE_DIR "/README.md").find(table),
            std::string::npos)
      << "README.md's config key table differs from:\n"
      << table;
}

TEST(TrainConfig, BuiltInRecipeIsTheShippedFashionMnistFile) {
  EXPECT_EQ(diffstride::default_train_config_toml(),
            read_text(DIFFSTRIDE_SOURCE_DIR "/configs/fashion_mnist.toml"));
}

TEST(TrainConfig, BadConfigsNameTheKeyOrFile) {
  const auto bad = [](std::vector<std::string> overrides,
                      const std::string& expected) {
    expect_error_containing(
        [&] { diffstride::load_train_config("", overrides); }, expected);
  };
  bad({"model.polling=spectral"},
      "unknown key 'model.polling'; known keys of [model]:");
  bad({"modle.pooling=spectral"}, "unknown section [modle]");
  bad({"data.batch_size=\"many\""}, "data.batch_size: expected an integer");
  bad({"data.batch_size=0"}, "data.batch_size: expected an integer >= 1");
  bad({"model.pooling=max"},
      "model.pooling: 'max' is not one of diffstride, none, spatial, spectral");
  bad({"model.strides=1,0.5,2"},
      "model.strides: expected strides >= 1 per stage");
  bad({"optimizer.values=[0.1]"},
      "optimizer.values: expected one more value than optimizer.boundaries");
  bad({"optimizer.boundaries=[5, 3, 9]"},
      "optimizer.boundaries: expected strictly increasing steps > 0");
  bad({"optimizer.boundaries=[-4, 3]", "optimizer.values=[1, 2, 3]"},
      "optimizer.boundaries: expected strictly increasing steps > 0");
  bad({"optimizer.momentum=5"},
      "optimizer.momentum: expected a number in [0, 1)");
  bad({"optimizer.values=[1e39, 0.1, 0.01, 0.001]"},
      "optimizer.values: expected learning rates > 0 and within float range");
  bad({"train.device=tpu"},
      "train.device: 'tpu' is not a device: expected auto, cpu, cuda or "
      "cuda:N");
  bad({"model.filters=[8, 0, 8]"}, "model.filters: expected integers >= 1");
  bad({"model.layers_per_block=0"},
      "model.layers_per_block: expected an integer >= 1 (leave the key out "
      "for the factory's)");
  bad({"model.lower_limit_stride=0.5"},
      "model.lower_limit_stride: expected a number >= 1");
  bad({"model.lower_limit_stride=3", "model.upper_limit_stride=2"},
      "model.upper_limit_stride: expected a number >= model.lower_limit_stride "
      "(3), got 2");
  bad({"data.dataset=imagenet"}, "data.dataset: 'imagenet' is not one of");
  bad({"pooling"}, "--set pooling: expected section.key=value");
  expect_error_containing(
      [] { diffstride::load_train_config("/no/such/config.toml"); },
      "/no/such/config.toml: config file not found");
  expect_error_containing(
      [] { diffstride::load_train_config(DIFFSTRIDE_SOURCE_DIR "/configs"); },
      "/configs: not a regular file; expected a TOML config file");
  expect_error_containing(
      [] { diffstride::parse_train_config("[data\nx=1", {}, "broken.toml"); },
      "broken.toml: line 1:");
}

TEST(TrainConfig, LearningRateIsPiecewiseConstantByStep) {
  const TrainConfig::Optimizer
      recipe;  // 0.01 / 400 / 0.1 / 18000 / 0.01 / 32000 / 0.001
  const std::vector<std::pair<int64_t, double>> expected = {{0, 0.01},
                                                            {399, 0.01},
                                                            {400, 0.1},
                                                            {401, 0.1},
                                                            {17999, 0.1},
                                                            {18000, 0.01},
                                                            {31999, 0.01},
                                                            {32000, 0.001},
                                                            {1000000, 0.001}};
  for (const auto& [step, lr] : expected) {
    EXPECT_EQ(diffstride::learning_rate_at(recipe, step), lr)
        << "step " << step;
  }
}

TEST(Loss, LabelSmoothedSoftCrossEntropyAndL2MatchHandComputation) {
  // Two examples, three classes, targets smoothed by 0.3: 0.8 / 0.1 / 0.1.
  const auto logits =
      torch::tensor({{1.0, 2.0, 0.5}, {0.0, -1.0, 3.0}}, torch::kDouble);
  const auto targets =
      torch::tensor({{0.8, 0.1, 0.1}, {0.1, 0.1, 0.8}}, torch::kDouble);
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    double norm = 0;
    for (int k = 0; k < 3; ++k)
      norm += std::exp(logits[i][k].item<double>());
    for (int k = 0; k < 3; ++k) {
      expected -= targets[i][k].item<double>() *
                  (logits[i][k].item<double>() - std::log(norm));
    }
  }
  EXPECT_NEAR(diffstride::soft_cross_entropy(logits, targets).item<double>(),
              expected / 2,
              1e-12);

  auto config = diffstride::load_train_config(
      "", {"model.filters=[4, 8]", "model.strides=[1, 2]"});
  const auto model = diffstride::build_model(config, 1, 3);
  double sum = 0;
  int counted = 0;
  for (const auto& p : model->named_parameters()) {
    // Kernels of the convolutions (4-D) and the dense layer; no batch norm,
    // no strides.
    const bool conv_kernel = p.value().dim() == 4;
    const bool dense = p.key().rfind("fc.", 0) == 0;
    if (conv_kernel || dense) {
      sum += p.value().square().sum().item<double>();
      ++counted;
    }
  }
  EXPECT_EQ(counted,
            1 + 3 + 2);  // stem, block conv0 conv1 shortcut, fc weight and bias
  EXPECT_NEAR(diffstride::l2_penalty(model).item<double>(), sum, 1e-6 * sum);
}

namespace {

// Bitwise CRC-32C, written here independently of the library's table.
uint32_t crc32c_bitwise(const uint8_t* data, size_t size) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t masked(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

}  // namespace

TEST(EventWriter, RecordsAreFramedWithLengthAndMaskedCrc32c) {
  // The CRC-32C check value of "123456789".
  const std::string check = "123456789";
  EXPECT_EQ(
      diffstride::crc32c(reinterpret_cast<const uint8_t*>(check.data()), 9),
      0xE3069283u);
  const auto dir = diffstride_test::scratch_folder("events");
  std::string path;
  {
    diffstride::EventWriter events(dir.string());
    events.add_scalar("test/accuracy", 0.875, 3);
    events.add_scalar("strides/layer0_height", 1.5, 4);
    path = events.path();
  }
  const auto bytes = read_text(path);
  size_t at = 0;
  std::vector<std::string> records;
  while (at < bytes.size()) {
    ASSERT_LE(at + 12, bytes.size());
    uint64_t length = 0;
    uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    EXPECT_EQ(length_crc,
              masked(crc32c_bitwise(
                  reinterpret_cast<const uint8_t*>(bytes.data() + at), 8)));
    ASSERT_LE(at + 12 + length + 4, bytes.size());
    const std::string data = bytes.substr(at + 12, length);
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    EXPECT_EQ(data_crc,
              masked(crc32c_bitwise(
                  reinterpret_cast<const uint8_t*>(data.data()), length)));
    records.push_back(data);
    at += 12 + length + 4;
  }
  ASSERT_EQ(records.size(), 3u);
  EXPECT_NE(records[0].find("brain.Event:2"), std::string::npos);
  EXPECT_NE(records[1].find("test/accuracy"), std::string::npos);
  const float value = 0.875f;
  EXPECT_NE(
      records[1].find(std::string(reinterpret_cast<const char*>(&value), 4)),
      std::string::npos);
  // step 4 as the varint of field 2.
  EXPECT_NE(records[2].find(std::string("\x10\x04", 2)), std::string::npos);
}

namespace {}  // namespace

TEST(Training, TinyRunLowersTheLossWritesItsFolderAndEvaluates) {
  const auto root = diffstride_test::scratch_folder("tiny");
  write_tiny_idx(root / "data", 192, 64);
  const auto config = tiny_config(root / "data", root / "run");
  const auto epochs = diffstride::train(config);
  ASSERT_EQ(epochs.size(), 3u);
  EXPECT_LT(epochs[2].train_loss, epochs[0].train_loss);
  EXPECT_GT(epochs[2].test_accuracy, 0.5);  // 4 classes: chance is 0.25
  EXPECT_EQ(epochs[2].step, 3 * (192 / 16));
  for (const auto* file :
       {"config.toml", "metrics.csv", "checkpoint.pt", "model.pt"}) {
    EXPECT_TRUE(fs::exists(root / "run" / file)) << file;
  }
  EXPECT_EQ(metrics_without_rate(root / "run" / "metrics.csv").size(),
            4u);  // header + 3
  int event_files = 0;
  for (const auto& entry : fs::directory_iterator(root / "run")) {
    event_files +=
        entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_EQ(event_files, 1);
  const auto evaluation =
      diffstride::evaluate_checkpoint((root / "run" / "model.pt").string());
  EXPECT_EQ(evaluation.examples, 64);
  EXPECT_NEAR(evaluation.accuracy, epochs[2].test_accuracy, 1e-12);
  // The folder holds a run: a new one refuses to overwrite it.
  expect_error_containing([&] { diffstride::train(config); },
                          "already holds a run: resume it with --resume");
}

TEST(Training, KilledAndResumedRunEndsWithTheSameMetrics) {
  const auto root = diffstride_test::scratch_folder("resume");
  write_tiny_idx(root / "data", 160, 48);
  diffstride::train(tiny_config(root / "data", root / "whole"));
  const auto interrupted = tiny_config(root / "data", root / "parts");
  diffstride::TrainOptions stop;
  stop.stop_after_steps = 4;  // mid-epoch 1 (10 batches per epoch)
  EXPECT_TRUE(diffstride::train(interrupted, stop).empty());
  stop.resume = true;
  stop.stop_after_steps = 11;  // across the end of epoch 1, into epoch 2
  EXPECT_EQ(diffstride::train(interrupted, stop).size(), 1u);
  diffstride::TrainOptions rest;
  rest.resume = true;
  EXPECT_EQ(diffstride::train(interrupted, rest).size(), 2u);
  EXPECT_EQ(metrics_without_rate(root / "parts" / "metrics.csv"),
            metrics_without_rate(root / "whole" / "metrics.csv"));
}

TEST(Training, ComplexityPenaltyPushesStridesUp) {
  const auto root = diffstride_test::scratch_folder("penalty");
  write_tiny_idx(root / "data", 96, 16);
  auto plain = tiny_config(root / "data", root / "plain");
  plain.train.epochs = 1;
  auto penalised = tiny_config(root / "data", root / "penalised");
  penalised.train.epochs = 1;
  penalised.loss.complexity_lambda = 5.0;
  const auto without = diffstride::train(plain).back().strides;
  const auto with = diffstride::train(penalised).back().strides;
  ASSERT_EQ(without.size(), with.size());
  for (size_t layer = 0; layer < with.size(); ++layer) {
    for (int axis = 0; axis < 2; ++axis) {
      EXPECT_GT(with[layer][axis], without[layer][axis])
          << layer << " " << axis;
    }
  }
}
