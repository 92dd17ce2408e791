#include "data_command.h"

#include <diffstride/data/dataset.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>

namespace diffstride_cli {

CLI::App* add_data_command(CLI::App& app, DataArgs& args) {
  auto* command = app.add_subcommand(
      "data",
      "per split: examples, classes, examples per class, and per channel the "
      "mean and standard deviation of pixel values scaled to [0, 1]");
  command
      ->add_option(
          "--dataset", args.dataset, "cifar10, cifar100 or fashion_mnist")
      ->check(CLI::IsMember(diffstride::dataset_names()))
      ->capture_default_str();
  command->add_option("--data-dir",
                      args.data_dir,
                      "folder holding the dataset's files (default: "
                      "/usr/share/datasets/fashion-mnist for fashion_mnist, "
                      "data/<dataset> for CIFAR)");
  return command;
}

int run_data(const DataArgs& args) {
  std::cout << args.dataset << " from "
            << (args.data_dir.empty()
                    ? diffstride::default_data_dir(args.dataset)
                    : args.data_dir)
            << "\n";
  for (const std::string split : {"train", "test"}) {
    const auto data =
        diffstride::load_dataset(args.dataset, split, args.data_dir);
    const auto counts = torch::bincount(data.labels, {}, data.num_classes);
    // Per channel, over all pixels of all images, in float64.
    const auto pixels = data.images.to(torch::kDouble)
                            .div_(255.0)
                            .transpose(0, 1)
                            .reshape({data.images.size(1), -1});
    const auto mean = pixels.mean(1);
    const auto std = pixels.std(1, /*unbiased=*/false);
    std::cout << "\n"
              << split << ": " << data.images.size(0) << " examples of "
              << data.images.size(1) << "x" << data.images.size(2) << "x"
              << data.images.size(3) << ", " << data.num_classes << " classes\n"
              << "  examples per class:";
    for (int64_t k = 0; k < data.num_classes; ++k) {
      std::cout << (k % 10 == 0 ? "\n   " : "") << " "
                << counts[k].item<int64_t>();
    }
    std::cout << "\n" << std::fixed << std::setprecision(3);
    for (int64_t c = 0; c < pixels.size(0); ++c) {
      std::cout << "  channel " << c << ": mean " << mean[c].item<double>()
                << ", std " << std[c].item<double>() << "\n";
    }
    std::cout.unsetf(std::ios::fixed);
  }
  return 0;
}

}  // namespace diffstride_cli
