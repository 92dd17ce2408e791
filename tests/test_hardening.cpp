// Hostile input to the training tool: checkpoints of another architecture,
// damaged checkpoints, damaged metrics on resume. Each gives a clear error
// naming the file, never a crash and never a silently different result.

#include <diffstride/data/idx.h>
#include <diffstride/train/run_folder.h>
#include <diffstride/train/trainer.h>

#include "support/tiny_run.h"
#include "test_helpers.h"
#include "train/checked_file.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>

namespace fs = std::filesystem;
using diffstride_test::expect_error_containing;
using diffstride_test::finished_tiny_run;
using diffstride_test::metrics_without_rate;
using diffstride_test::tiny_config;
using diffstride_test::write_tiny_idx;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The dict of named tensors `file` (a checkpoint) holds, and its content.
std::pair<c10::IValue, std::string> stored_checkpoint(const fs::path& file) {
  auto content = diffstride::detail::verified_content(file, "checkpoint");
  auto dict = torch::jit::pickle_load(
      std::vector<char>(content.begin(), content.end()));
  return {std::move(dict), std::move(content)};
}

// Files of `folder` whose name marks a temporary file of replace_file.
int temporary_files(const fs::path& folder) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    count += entry.path().filename().string().find(".tmp") != std::string::npos;
  }
  return count;
}

}  // namespace

// A checkpoint made with filters [4, 8] placed in a run whose config says
// [8, 8]: resuming and evaluating are errors naming the parameter and both
// shapes, before anything is loaded.
TEST(Hardening, CheckpointOfAnotherArchitectureIsRefused) {
  const auto small = finished_tiny_run("architecture");
  const auto root = fs::path(small.train.out).parent_path();
  auto wide = tiny_config(root / "data", root / "wide");
  wide.model.filters = {8, 8};
  diffstride::TrainOptions stop;
  stop.stop_after_steps = 1;
  diffstride::train(wide, stop);
  const auto wide_before = read_bytes(root / "wide" / "checkpoint.pt");
  fs::copy_file(root / "run" / "checkpoint.pt",
                root / "wide" / "checkpoint.pt",
                fs::copy_options::overwrite_existing);
  // Every tensor that differs is named (the first ten), then the cause.
  const std::string message =
      "checkpoint.pt: stem.weight has shape [4, 1, 3, 3] where this run's "
      "config.toml gives [8, 1, 3, 3]; blocks.block0_layer0.";
  diffstride::TrainOptions resume;
  resume.resume = true;
  expect_error_containing([&] { diffstride::train(wide, resume); }, message);
  expect_error_containing(
      [&] {
        diffstride::evaluate_checkpoint(
            (root / "wide" / "checkpoint.pt").string());
      },
      message);
  // The model file of the small run, too, in the wide folder.
  fs::copy_file(root / "run" / "model.pt", root / "wide" / "model.pt");
  expect_error_containing(
      [&] {
        diffstride::evaluate_checkpoint((root / "wide" / "model.pt").string());
      },
      "model.pt: stem");
  // Nothing was written over the wide run's files by the refused resume.
  EXPECT_NE(read_bytes(root / "wide" / "checkpoint.pt"), wide_before);
  EXPECT_EQ(read_bytes(root / "wide" / "checkpoint.pt"),
            read_bytes(root / "run" / "checkpoint.pt"));
}

// A model of another pooling with the same filters: the DiffStride run's
// file holds the learned strides the spectral model lacks (and the other way
// round the strides are missing). Both are refused, naming the tensor,
// rather than loaded with the strides silently dropped.
TEST(Hardening, ModelOfAnotherPoolingIsRefusedNamingTheTensor) {
  const auto learned = finished_tiny_run("pooling");  // diffstride
  const auto root = fs::path(learned.train.out).parent_path();
  auto spectral = tiny_config(root / "data", root / "spectral");
  spectral.model.pooling = "spectral";
  spectral.train.epochs = 1;
  diffstride::train(spectral);
  fs::create_directories(root / "mixed");
  fs::copy_file(root / "spectral" / "config.toml",
                root / "mixed" / "config.toml");
  fs::copy_file(root / "run" / "model.pt", root / "mixed" / "model.pt");
  expect_error_containing(
      [&] {
        diffstride::evaluate_checkpoint((root / "mixed" / "model.pt").string());
      },
      "model.pt: holds stem_pooling.strides, which the model this run's "
      "config.toml describes does not have");
  // Resuming the spectral run from the DiffStride run's checkpoint, too.
  fs::copy_file(root / "run" / "checkpoint.pt",
                root / "spectral" / "checkpoint.pt",
                fs::copy_options::overwrite_existing);
  diffstride::TrainOptions resume;
  resume.resume = true;
  expect_error_containing(
      [&] { diffstride::train(spectral, resume); },
      "checkpoint.pt: holds stem_pooling.strides, which the model this run's "
      "config.toml describes does not have; holds blocks.block0_layer0."
      "pooling.strides");
  fs::copy_file(root / "spectral" / "model.pt", root / "run" / "spectral.pt");
  expect_error_containing(
      [&] {
        diffstride::evaluate_checkpoint(
            (root / "run" / "spectral.pt").string());
      },
      "spectral.pt: holds no stem_pooling");
}

// 200 random single-byte changes in a checkpoint: every one is a clear error
// naming the file (the checksum written with it does not match), none
// crashes and none evaluates to different numbers.
TEST(Hardening, DamagedCheckpointIsAClearErrorNeverACrashOrAnotherResult) {
  auto config = finished_tiny_run("flips");
  const auto root = fs::path(config.train.out).parent_path();
  const auto original = read_bytes(root / "run" / "checkpoint.pt");
  const auto expected = diffstride::evaluate_checkpoint(
      (root / "run" / "checkpoint.pt").string());
  fs::create_directories(root / "damaged");
  fs::copy_file(root / "run" / "config.toml", root / "damaged" / "config.toml");
  const auto damaged = root / "damaged" / "checkpoint.pt";
  std::mt19937_64 rng(12);
  int errors = 0, identical = 0;
  for (int flip = 0; flip < 200; ++flip) {
    auto bytes = original;
    const size_t at = rng() % bytes.size();
    bytes[at] = static_cast<char>(bytes[at] ^ (1 + rng() % 255));
    write_bytes(damaged, bytes);
    try {
      const auto result = diffstride::evaluate_checkpoint(damaged.string());
      EXPECT_EQ(result.loss, expected.loss) << "byte " << at;
      EXPECT_EQ(result.accuracy, expected.accuracy) << "byte " << at;
      ++identical;
    } catch (const c10::Error& error) {
      const std::string message = error.what_without_backtrace();
      EXPECT_NE(message.find(damaged.string()), std::string::npos) << message;
      ++errors;
    }
  }
  EXPECT_EQ(errors + identical, 200);
  // Truncated, empty, and a folder where the file should be.
  write_bytes(damaged, original.substr(0, original.size() / 2));
  expect_error_containing(
      [&] { diffstride::evaluate_checkpoint(damaged.string()); },
      "the header announces");
  write_bytes(damaged, "");
  expect_error_containing(
      [&] { diffstride::evaluate_checkpoint(damaged.string()); },
      "not a diffstride checkpoint or model (its header is missing");
  fs::remove(damaged);
  fs::create_directories(damaged);
  expect_error_containing(
      [&] { diffstride::evaluate_checkpoint(damaged.string()); },
      "not a regular file");
}

// Damage behind a valid checksum (a tool that rewrote the file, or a
// change made on purpose): every digit of the archive changed in turn (the
// storages' keys and sizes, the zip records' numbers), and 200 random byte
// changes. Each loads (weights may differ) or is a clear error naming the file;
// no other exception escapes, and nothing crashes.
TEST(Hardening, DamageUnderAValidChecksumIsAClearErrorNeverAnotherException) {
  auto config = finished_tiny_run("valid_checksum");
  const auto root = fs::path(config.train.out).parent_path();
  const auto content =
      diffstride::detail::verified_content(root / "run" / "model.pt", "model");
  std::vector<size_t> positions;
  for (size_t at = 0; at < content.size(); ++at) {
    if (content[at] >= '0' && content[at] <= '9') {
      positions.push_back(at);
    }
  }
  std::mt19937_64 rng(5);
  for (int flip = 0; flip < 200; ++flip) {
    positions.push_back(rng() % content.size());
  }
  const auto damaged = root / "damaged.pt";
  int errors = 0, loaded = 0;
  for (size_t i = 0; i < positions.size(); ++i) {
    auto bytes = content;
    char& byte = bytes[positions[i]];
    const bool digit = byte >= '0' && byte <= '9' && i < positions.size() - 200;
    byte = digit ? static_cast<char>('0' + (byte - '0' + 6) % 10)
                 : static_cast<char>(byte ^ (1 + rng() % 255));
    write_bytes(damaged, diffstride::detail::with_integrity_header(bytes));
    auto model = diffstride::build_model(config, 1, 10);
    try {
      diffstride::load_model_weights(damaged.string(), *model);
      ++loaded;
    } catch (const c10::Error& error) {
      const std::string message = error.what_without_backtrace();
      EXPECT_NE(message.find(damaged.string()), std::string::npos) << message;
      ++errors;
    } catch (const std::exception& error) {
      ADD_FAILURE() << "byte " << positions[i] << ": " << error.what();
    }
  }
  EXPECT_EQ(errors + loaded, static_cast<int>(positions.size()));
  EXPECT_GT(errors, 0);
}

// Files with a valid header and checksum whose tensors are wrong: a
// missing position, a tensor larger than the storage the file gives it,
// and the format of earlier versions. Each is an error naming the file and
// the problem; the model is left as it was.
TEST(Hardening, WellFormedFilesWithWrongTensorsAreClearErrors) {
  auto config = finished_tiny_run("wrong_tensors");
  const auto run = fs::path(config.train.out);
  const auto checkpoint = stored_checkpoint(run / "checkpoint.pt");
  const c10::IValue& original = checkpoint.first;
  const std::string& content = checkpoint.second;
  const auto rewrite =
      [&](const std::function<void(c10::Dict<std::string, at::Tensor>&)>&
              change) {
        c10::Dict<std::string, at::Tensor> tensors;
        for (const auto& entry : original.toGenericDict()) {
          tensors.insert(entry.key().toStringRef(), entry.value().toTensor());
        }
        change(tensors);
        write_bytes(run / "checkpoint.pt",
                    diffstride::detail::with_integrity_header(
                        diffstride::python_tensor_dict(tensors)));
      };
  auto model = diffstride::build_model(config, 1, 10);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  const auto before = model->parameters().front().clone();
  const auto folder = diffstride::RunFolder::resume(run.string());
  rewrite([](auto& tensors) { EXPECT_EQ(tensors.erase("position"), 1u); });
  expect_error_containing(
      [&] { folder.read_checkpoint(*model, optimizer); },
      "checkpoint.pt: not a diffstride checkpoint (expected position: 3 "
      "values of Long)");
  rewrite([](auto& tensors) {
    auto larger = torch::zeros({3}, torch::kLong);
    const std::vector<int64_t> sizes{300}, strides{1};
    larger.unsafeGetTensorImpl()->set_sizes_and_strides(sizes, strides);
    tensors.insert_or_assign("position", larger);
  });
  expect_error_containing(
      [&] { folder.read_checkpoint(*model, optimizer); },
      "checkpoint.pt: not a diffstride checkpoint (damaged content: tensor "
      "position reaches beyond its storage)");
  // An offset that makes offset + (size - 1) * stride wrap past 2^64 bytes.
  rewrite([](auto& tensors) {
    auto wrapping = torch::zeros({3}, torch::kLong);
    const std::vector<int64_t> sizes{3}, strides{int64_t{1} << 40};
    wrapping.unsafeGetTensorImpl()->set_sizes_and_strides(sizes, strides);
    wrapping.unsafeGetTensorImpl()->set_storage_offset((int64_t{1} << 61) -
                                                       2 * (int64_t{1} << 40));
    tensors.insert_or_assign("position", wrapping);
  });
  expect_error_containing(
      [&] { folder.read_checkpoint(*model, optimizer); },
      "(damaged content: tensor position reaches beyond its storage)");
  // Records shorter than the element counts the pickle claims.
  {
    std::istringstream stream(content);
    caffe2::serialize::PyTorchStreamReader reader(&stream);
    std::string shortened;
    caffe2::serialize::PyTorchStreamWriter writer(
        [&](const void* data, size_t size) {
          shortened.append(static_cast<const char*>(data), size);
          return size;
        });
    for (const auto& name : reader.getAllRecords()) {
      const bool storage = name.rfind("data/", 0) == 0;
      if (storage || name == "data.pkl") {
        const auto record = reader.getRecord(name);
        writer.writeRecord(
            name, std::get<0>(record).get(), storage ? 1 : std::get<1>(record));
      }
    }
    writer.writeEndOfFile();
    write_bytes(run / "checkpoint.pt",
                diffstride::detail::with_integrity_header(shortened));
  }
  expect_error_containing([&] { folder.read_checkpoint(*model, optimizer); },
                          "reaches beyond its storage)");
  EXPECT_TRUE(torch::equal(model->parameters().front(), before));
  EXPECT_TRUE(optimizer.state().empty());
  auto former = diffstride::detail::with_integrity_header(content);
  former.replace(0, 8, "DSTRIDE1");
  write_bytes(run / "model.pt", former);
  expect_error_containing(
      [&] {
        diffstride::load_model_weights((run / "model.pt").string(), *model);
      },
      "model.pt: a checkpoint or model in the format of earlier versions of "
      "diffstride");
}

// The optimiser holds after a load exactly the momentum the checkpoint
// holds: each buffer equal to the file's, and no state left from before
// for a parameter the file gives none.
TEST(Hardening, CheckpointMomentumReplacesTheOptimisersState) {
  auto config = finished_tiny_run("momentum");
  const auto run = fs::path(config.train.out);
  const auto stored = stored_checkpoint(run / "checkpoint.pt").first;
  c10::Dict<std::string, at::Tensor> without_momentum;
  int64_t momentum_entries = 0;
  for (const auto& entry : stored.toGenericDict()) {
    const auto& name = entry.key().toStringRef();
    momentum_entries += name.rfind("momentum.", 0) == 0;
    if (name.rfind("momentum.", 0) != 0) {
      without_momentum.insert(name, entry.value().toTensor());
    }
  }
  ASSERT_GT(momentum_entries, 0);
  auto model = diffstride::build_model(config, 1, 10);
  torch::optim::SGD optimizer(model->parameters(),
                              torch::optim::SGDOptions(0.1).momentum(0.9));
  model->forward(torch::rand({2, 1, 28, 28})).sum().backward();
  optimizer.step();  // a momentum buffer for every parameter
  const auto folder = diffstride::RunFolder::resume(run.string());
  folder.read_checkpoint(*model, optimizer);
  ASSERT_EQ(static_cast<int64_t>(optimizer.state().size()), momentum_entries);
  for (const auto& parameter : model->named_parameters()) {
    const auto key = "momentum." + parameter.key();
    const auto found = stored.toGenericDict().find(key);
    if (found != stored.toGenericDict().end()) {
      bool matched = false;
      for (const auto& state : optimizer.state()) {
        const auto& buffer =
            static_cast<const torch::optim::SGDParamState&>(*state.second)
                .momentum_buffer();
        matched |= buffer.sizes() == parameter.value().sizes() &&
                   torch::equal(buffer, found->value().toTensor());
      }
      EXPECT_TRUE(matched) << key;
    }
  }
  write_bytes(run / "checkpoint.pt",
              diffstride::detail::with_integrity_header(
                  diffstride::python_tensor_dict(without_momentum)));
  folder.read_checkpoint(*model, optimizer);
  EXPECT_TRUE(optimizer.state().empty());
}

// A blank or garbage line in metrics.csv: resuming names the line and
// changes no file.
TEST(Hardening, DamagedMetricsOnResumeNameTheLine) {
  auto config = finished_tiny_run("metrics");
  const auto root = fs::path(config.train.out).parent_path();
  config.train.epochs = 2;
  const auto csv = root / "run" / "metrics.csv";
  const auto checkpoint = read_bytes(root / "run" / "checkpoint.pt");
  for (const std::string& bad : {std::string(""), std::string("garbage,1")}) {
    auto text = read_bytes(csv);
    write_bytes(csv, text + bad + "\n");
    diffstride::TrainOptions resume;
    resume.resume = true;
    expect_error_containing([&] { diffstride::train(config, resume); },
                            "metrics.csv line 3: expected a row starting with "
                            "its epoch number, got '" +
                                bad + "'");
    EXPECT_EQ(read_bytes(root / "run" / "checkpoint.pt"), checkpoint);
    write_bytes(csv, text);
  }
}

// A learning rate that blows the weights up: the run stops at the first
// non-finite loss with an error naming the step, and the checkpoint of the
// last finished epoch is left as it was.
TEST(Hardening, NonFiniteLossStopsTheRunAndKeepsTheLastCheckpoint) {
  auto config = finished_tiny_run("nan");
  const auto root = fs::path(config.train.out).parent_path();
  const auto checkpoint = read_bytes(root / "run" / "checkpoint.pt");
  config.train.epochs = 3;
  config.optimizer.boundaries = {2};
  config.optimizer.values = {0.05, 1e30};
  diffstride::TrainOptions resume;
  resume.resume = true;
  expect_error_containing([&] { diffstride::train(config, resume); },
                          "): the training loss is ");
  try {
    diffstride::train(config, resume);
  } catch (const c10::Error& error) {
    const std::string message = error.what_without_backtrace();
    EXPECT_EQ(message.rfind("step ", 0), 0u) << message;
    EXPECT_NE(message.find("last checkpoint, if any, is unchanged"),
              std::string::npos);
  }
  EXPECT_EQ(read_bytes(root / "run" / "checkpoint.pt"), checkpoint);
}

// The device notes the first step whose loss is not finite; the run stops
// at the next read of the figures with an error naming that step, and
// writes no checkpoint. Here the read comes when step 3 fails on the
// strides the NaN gradients of step 2 poisoned: the loss is still what is
// reported.
TEST(Hardening, NonFiniteLossIsNamedByItsFirstStep) {
  const auto root = diffstride_test::scratch_folder("first_nan");
  write_tiny_idx(root / "data", 48, 16);
  auto config = tiny_config(root / "data", root / "run");
  config.train.log_every_steps = 100;
  diffstride::TrainOptions poison;
  poison.after_step = [&](diffstride::ResNet& model, int64_t step) {
    if (step == 1) {
      torch::NoGradGuard no_grad;
      model->fc->bias.fill_(std::numeric_limits<float>::quiet_NaN());
    }
  };
  expect_error_containing(
      [&] { diffstride::train(config, poison); },
      "step 2 (epoch 1, batch 2): the training loss is not finite");
  EXPECT_FALSE(fs::exists(root / "run" / "checkpoint.pt"));
}

// Interrupted before its first checkpoint: --resume starts the run from its
// beginning, and so does a new run with the same folder; both end with the
// metrics of an uninterrupted run.
TEST(Hardening, RunInterruptedBeforeItsFirstCheckpointCanContinue) {
  const auto root = diffstride_test::scratch_folder("first");
  write_tiny_idx(root / "data", 48, 16);
  auto whole = tiny_config(root / "data", root / "whole");
  whole.train.epochs = 2;
  diffstride::train(whole);
  const auto expected = metrics_without_rate(root / "whole" / "metrics.csv");
  for (const bool resume : {true, false}) {
    SCOPED_TRACE(resume ? "--resume" : "a new run in the same folder");
    const auto folder = root / (resume ? "resumed" : "restarted");
    auto config = tiny_config(root / "data", folder);
    config.train.epochs = 2;
    diffstride::TrainOptions stop;
    stop.stop_after_steps = 1;  // before the end of epoch 1 (3 steps)
    diffstride::train(config, stop);
    fs::remove(folder / "checkpoint.pt");  // killed, not interrupted
    ASSERT_TRUE(fs::exists(folder / "config.toml"));
    diffstride::TrainOptions again;
    again.resume = resume;
    EXPECT_EQ(diffstride::train(config, again).size(), 2u);
    EXPECT_EQ(metrics_without_rate(folder / "metrics.csv"), expected);
  }
}

namespace {

// A full disk, simulated by a limit on file sizes (RLIMIT_FSIZE): a write
// past it fails with EFBIG (SIGXFSZ, which would kill the process, is
// ignored meanwhile). Restores both when it goes out of scope.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit saved_{};
  void (*previous_handler_)(int) = nullptr;
};

}  // namespace

// The disk fills up at the end of epoch 2: first the checkpoint (44 KB)
// cannot be written, then not even metrics.csv. Each is an error naming the
// file; the previous checkpoint and metrics stay valid (no half rows, no
// temporary files left), and the run resumes from them once there is room.
TEST(Hardening, FullDiskIsAClearErrorAndKeepsThePreviousFiles) {
  auto config = finished_tiny_run("full");
  const auto root = fs::path(config.train.out).parent_path();
  const auto checkpoint = read_bytes(root / "run" / "checkpoint.pt");
  const auto metrics = read_bytes(root / "run" / "metrics.csv");
  config.train.epochs = 2;
  diffstride::TrainOptions resume;
  resume.resume = true;
  {
    const FileSizeLimit limit(4096);
    expect_error_containing([&] { diffstride::train(config, resume); },
                            "checkpoint.pt: cannot write (File too large); "
                            "the previous file, if any, is unchanged");
  }
  EXPECT_EQ(read_bytes(root / "run" / "checkpoint.pt"), checkpoint);
  EXPECT_EQ(temporary_files(root / "run"), 0);
  {
    const FileSizeLimit limit(100);
    expect_error_containing([&] { diffstride::train(config, resume); },
                            "metrics.csv: cannot write (File too large)");
  }
  EXPECT_EQ(read_bytes(root / "run" / "checkpoint.pt"), checkpoint);
  EXPECT_EQ(read_bytes(root / "run" / "metrics.csv").substr(0, metrics.size()),
            metrics);
  EXPECT_EQ(temporary_files(root / "run"), 0);
  // With room again, the run resumes and ends with two rows.
  EXPECT_EQ(diffstride::train(config, resume).size(), 1u);
  EXPECT_EQ(metrics_without_rate(root / "run" / "metrics.csv").size(), 3u);
}

// Data files that are not what they claim: a FIFO (would block), a device
// (/dev/zero never ends), and a gzip bomb (2 MB that inflate to far more
// than its header announces) are refused without reading them whole.
TEST(Hardening, SpecialFilesAndGzipBombsAreRefusedWithBoundedReads) {
  const auto root = diffstride_test::scratch_folder("special");
  const auto fifo = root / "train-images-idx3-ubyte";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  expect_error_containing([&] { diffstride::read_idx(fifo.string()); },
                          "train-images-idx3-ubyte: not a regular file");
  expect_error_containing([] { diffstride::read_idx("/dev/zero"); },
                          "/dev/zero: not a regular file");
  // 10 images of 28 x 28 announced, then 64 MiB of zeros, gzip-compressed.
  std::vector<uint8_t> header =
      diffstride_test::idx_bytes(0x803, {10, 28, 28}, {});
  const auto bomb = root / "bomb.gz";
  {
    gzFile file = gzopen(bomb.c_str(), "wb9");
    gzwrite(file, header.data(), static_cast<unsigned>(header.size()));
    const std::vector<uint8_t> zeros(1 << 20, 0);
    for (int mib = 0; mib < 64; ++mib) {
      gzwrite(file, zeros.data(), static_cast<unsigned>(zeros.size()));
    }
    gzclose(file);
  }
  ASSERT_LT(fs::file_size(bomb), 1u << 20);
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  expect_error_containing(
      [&] { diffstride::read_idx(bomb.string()); },
      "bomb.gz: the header announces 7840 bytes of data (sizes [10, 28, 28]), "
      "the file holds more (trailing bytes)");
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  // Peak resident memory (KiB) grew by far less than the 64 MiB inflated.
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 16 * 1024);
}

// A test split whose images differ in size from the training split's.
TEST(Hardening, SplitsOfDifferentImageSizesAreRefused) {
  const auto root = diffstride_test::scratch_folder("splits");
  write_tiny_idx(root / "data", 32, 16);
  std::vector<uint8_t> pixels(16 * 14 * 14, 9);
  diffstride_test::write_file(
      root / "data" / "t10k-images-idx3-ubyte",
      diffstride_test::idx_bytes(0x803, {16, 14, 14}, pixels));
  expect_error_containing(
      [&] { diffstride::train(tiny_config(root / "data", root / "run")); },
      "the training images are [1, 12, 12] (C, H, W) but the test images "
      "[1, 14, 14]; both splits must have one image size");
}

// mixup_alpha = 0.001 made every Beta draw 0/0 and every loss nan; now the
// draws are exact and the run's losses finite.
TEST(Hardening, TinyMixupAlphaTrainsWithFiniteLosses) {
  const auto root = diffstride_test::scratch_folder("mixup");
  write_tiny_idx(root / "data", 64, 16);
  auto config = tiny_config(root / "data", root / "run");
  config.data.mixup_alpha = 0.001;
  config.train.epochs = 2;
  const auto epochs = diffstride::train(config);
  ASSERT_EQ(epochs.size(), 2u);
  for (const auto& epoch : epochs) {
    EXPECT_TRUE(std::isfinite(epoch.train_loss));
    EXPECT_TRUE(std::isfinite(epoch.test_loss));
  }
}

// Parameters holding nan or inf are never written as a checkpoint or model.
TEST(Hardening, NonFiniteParametersAreNeverCheckpointed) {
  auto config = finished_tiny_run("nonfinite");
  const auto folder = diffstride::RunFolder::resume(config.train.out);
  const auto before = read_bytes(folder.path() / "checkpoint.pt");
  auto model = diffstride::build_model(config, 1, 10);
  torch::optim::SGD optimizer(model->parameters(), 0.1);
  {
    torch::NoGradGuard no_grad;
    model->parameters().back().view(-1)[0] = NAN;
  }
  expect_error_containing(
      [&] { folder.save_checkpoint(*model, optimizer, {}); },
      "checkpoint.pt: not written: parameter ");
  expect_error_containing([&] { folder.save_model(*model); },
                          "holds non-finite values");
  EXPECT_EQ(read_bytes(folder.path() / "checkpoint.pt"), before);
}

// A CUDA device where there is none is an error naming the key before
// anything is written; "cpu" trains.
TEST(Hardening, UnavailableDeviceIsAClearError) {
  if (torch::cuda::is_available()) {
    GTEST_SKIP() << "this machine has a CUDA device";
  }
  auto config = diffstride_test::tiny_run_config("device");
  const auto root = fs::path(config.train.out).parent_path();
  config.train.device = "cuda:1";
  expect_error_containing(
      [&] { diffstride::train(config); },
      "train.device: cuda:1 requested, but no CUDA device is available");
  EXPECT_FALSE(fs::exists(root / "run" / "checkpoint.pt"));
  config.train.device = "cpu";
  config.train.out = (root / "cpu").string();
  EXPECT_EQ(diffstride::train(config).size(), 1u);
}

// On a GPU: a run trained on CUDA resumes on the CPU and the other way
// round, ending with the epochs of one run (checkpoints are
// device-independent).
TEST(DeviceCuda, RunsMoveBetweenCudaAndCpu) {
  if (!torch::cuda::is_available()) {
    GTEST_SKIP() << "no CUDA device";
  }
  auto config = diffstride_test::tiny_run_config("cuda_run");
  const auto root = fs::path(config.train.out).parent_path();
  config.train.device = "cuda";
  EXPECT_EQ(diffstride::train(config).size(), 1u);
  diffstride::TrainOptions resume;
  resume.resume = true;
  config.train.epochs = 2;
  config.train.device = "cpu";
  const auto cpu_epoch = diffstride::train(config, resume);
  ASSERT_EQ(cpu_epoch.size(), 1u);
  EXPECT_TRUE(std::isfinite(cpu_epoch[0].test_loss));
  config.train.epochs = 3;
  config.train.device = "cuda:0";
  EXPECT_EQ(diffstride::train(config, resume).size(), 1u);
  const auto evaluation =
      diffstride::evaluate_checkpoint((root / "run" / "model.pt").string());
  EXPECT_EQ(evaluation.examples, 16);
}
