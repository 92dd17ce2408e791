#include "data_command.h"

#include <diffstride/data/dataset.h>
#include <diffstride/train/config.h>
#include <torch/torch.h>

#include <chrono>
#include <iomanip>
#include <iostream>

namespace diffstride_cli {

namespace {

// The data section the options describe, checked as train checks a config.
diffstride::TrainConfig::Data data_config(const DataArgs& args) {
  // Numbers as config values (checked there); the folder as it is, not
  // read as TOML (a folder named 2024 or true is a folder).
  std::vector<std::string> overrides = {
      "data.dataset=" + args.dataset,
      "data.image_size=" + std::to_string(args.image_size),
      "data.channels=" + std::to_string(args.channels),
      "data.sample_rate=" + std::to_string(args.sample_rate),
      "data.clip_samples=" + std::to_string(args.clip_samples)};
  for (const auto& o : args.overrides) {
    if (o.rfind("data.", 0) != 0) {
      throw CLI::ValidationError(
          "--set",
          "expected a data.KEY=VALUE key of the config, got '" + o + "'");
    }
    overrides.push_back(o);
  }
  auto data = diffstride::load_train_config("", overrides).data;
  if (!args.data_dir.empty()) {
    data.data_dir = args.data_dir;
  }
  return data;
}

// Per channel, over all pixels of all examples, in float64: sums of the
// values (scaled to [0, 1] for pixels) and of their squares, a block of
// examples at a time, with progress on stderr.
std::pair<torch::Tensor, torch::Tensor> channel_sums(
    const diffstride::Dataset& data, const std::string& split) {
  const auto shape = data.example_shape();
  auto sums = torch::zeros({shape[0]}, torch::kDouble);
  auto squares = torch::zeros({shape[0]}, torch::kDouble);
  constexpr int64_t kBlock = 256;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t begin = 0; begin < data.size(); begin += kBlock) {
    const int64_t end = std::min(data.size(), begin + kBlock);
    torch::Tensor block;
    double full_scale = 255.0;
    if (data.reader) {
      full_scale = data.reader->full_scale();
      block = torch::empty({end - begin, shape[0], shape[1], shape[2]},
                           torch::kFloat);
      at::parallel_for(begin, end, 1, [&](int64_t first, int64_t last) {
        for (int64_t i = first; i < last; ++i) {
          data.reader->read(i, 0, block[i - begin].data_ptr<float>());
        }
      });
      const double seconds = std::chrono::duration<double>(
                                 std::chrono::steady_clock::now() - start)
                                 .count();
      const double rate = static_cast<double>(end) / std::max(seconds, 1e-9);
      std::cerr << "\r  " << split << ": " << end << "/" << data.size()
                << " examples, " << std::fixed << std::setprecision(0) << rate
                << "/s, ETA " << static_cast<double>(data.size() - end) / rate
                << " s   " << std::defaultfloat << std::flush;
    } else {
      block = data.images.slice(0, begin, end);
    }
    const auto values = block.to(torch::kDouble)
                            .div_(full_scale)
                            .transpose(0, 1)
                            .reshape({shape[0], -1});
    sums += values.sum(1);
    squares += values.square().sum(1);
  }
  if (data.reader) {
    std::cerr << "\n";
  }
  return {sums, squares};
}

}  // namespace

CLI::App* add_data_command(CLI::App& app, DataArgs& args) {
  auto* command = app.add_subcommand(
      "data",
      "per split: examples, classes, examples per class, and per channel the "
      "mean and standard deviation of the values scaled to [0, 1] (pixels) "
      "or as they are (sound), of the examples evaluation sees (centre "
      "crops and clips)");
  command
      ->add_option("--dataset",
                   args.dataset,
                   "cifar10, cifar100, fashion_mnist, image_folder or "
                   "audio_folder")
      ->check(CLI::IsMember(diffstride::dataset_names()))
      ->capture_default_str();
  command->add_option("--data-dir",
                      args.data_dir,
                      "folder holding the dataset's files (default: "
                      "/usr/share/datasets/fashion-mnist for fashion_mnist, "
                      "data/<dataset> for CIFAR)");
  command->add_option("--image-size",
                      args.image_size,
                      "image folders: the side of the examples (centre "
                      "crops, as evaluation sees them)");
  command->add_option("--channels",
                      args.channels,
                      "folders: 3 or 1 for images, 1 or 2 for sound (default: "
                      "3 for images, 1 for sound)");
  command->add_option("--sample-rate", args.sample_rate, "audio folders: Hz")
      ->capture_default_str();
  command
      ->add_option("--clip-samples",
                   args.clip_samples,
                   "audio folders: samples per example (centre clips)")
      ->capture_default_str();
  command->add_option("--set",
                      args.overrides,
                      "a data.KEY=VALUE key of the config, as train takes it "
                      "(e.g. data.skip_bad_files=true, data.max_image_pixels=N"
                      "; repeatable)");
  return command;
}

int run_data(const DataArgs& args) {
  auto config = data_config(args);
  config.train_crop = "center";  // the examples evaluation sees
  std::cout << config.dataset << " from "
            << (config.data_dir.empty()
                    ? diffstride::default_data_dir(config.dataset)
                    : config.data_dir)
            << std::endl;
  for (const std::string split : {"train", "test"}) {
    const auto data =
        diffstride::load_dataset(config.dataset,
                                 split,
                                 config.data_dir,
                                 diffstride::folder_options(config));
    const auto counts = torch::bincount(data.labels, {}, data.num_classes);
    const auto shape = data.example_shape();
    const auto [sums, squares] = channel_sums(data, split);
    const double n = static_cast<double>(data.size() * shape[1] * shape[2]);
    const auto mean = sums / n;
    const auto std = (squares / n - mean.square()).clamp_min(0).sqrt();
    std::cout << "\n"
              << split << ": " << data.size() << " examples of " << shape[0]
              << "x" << shape[1] << "x" << shape[2] << ", " << data.num_classes
              << " classes\n"
              << "  examples per class:";
    for (int64_t k = 0; k < data.num_classes; ++k) {
      std::cout << (k % 10 == 0 ? "\n   " : "") << " "
                << counts[k].item<int64_t>();
    }
    std::cout << "\n" << std::fixed << std::setprecision(3);
    for (int64_t c = 0; c < shape[0]; ++c) {
      std::cout << "  channel " << c << ": mean " << mean[c].item<double>()
                << ", std " << std[c].item<double>() << "\n";
    }
    if (data.reader && data.reader->skipped_files() > 0) {
      std::cout << "  "
                << diffstride::skipped_files_message(
                       data.reader->skipped_files())
                << "\n";
    }
    if (split == "train") {
      std::cout << std::defaultfloat << std::setprecision(4)
                << "  as config keys: data.mean = [";
      for (int64_t c = 0; c < shape[0]; ++c) {
        std::cout << (c ? ", " : "") << mean[c].item<double>();
      }
      std::cout << "], data.std = [";
      for (int64_t c = 0; c < shape[0]; ++c) {
        std::cout << (c ? ", " : "") << std[c].item<double>();
      }
      std::cout << "]\n";
    }
    std::cout.unsetf(std::ios::fixed);
  }
  return 0;
}

}  // namespace diffstride_cli
