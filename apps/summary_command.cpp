#include "summary_command.h"

#include "cli_parsing.h"

#include <diffstride/models/resnet.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <sstream>

namespace diffstride_cli {

namespace {

// 11172178 -> "11,172,178".
std::string with_thousands(int64_t n) {
  std::string digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) {
    digits.insert(static_cast<size_t>(i), ",");
  }
  return digits;
}

std::string join(const std::vector<int64_t>& sizes, int64_t from) {
  std::ostringstream out;
  for (size_t i = static_cast<size_t>(from); i < sizes.size(); ++i) {
    out << (i > static_cast<size_t>(from) ? " x " : "") << sizes[i];
  }
  return out.str();
}

}  // namespace

CLI::App* add_summary_command(CLI::App& app, SummaryArgs& args) {
  auto* command = app.add_subcommand(
      "summary",
      "a model's stage output shapes, DiffStride output sizes, trainable "
      "parameters and multiply-adds for one input size");
  add_model_option(command, args.model);
  command->add_option("--pooling", args.pooling, "the downsampling layer")
      ->check(CLI::IsMember(diffstride::pooling_names()))
      ->capture_default_str();
  command->add_option("--input", args.input, "input size CxHxW")
      ->capture_default_str();
  command->add_option("--classes", args.classes, "number of classes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--strides",
                      args.strides,
                      "one stride per stage (a number or HxW), e.g. 1,1,3,2,3 "
                      "(default: the model's)");
  return command;
}

int run_summary(const SummaryArgs& args) {
  const auto size = parse_input_size(args.input, "--input");
  auto options = diffstride::resnet_options(args.model)
                     .pooling(diffstride::parse_pooling(args.pooling))
                     .num_classes(args.classes)
                     .in_channels(size[0]);
  if (!args.strides.empty()) {
    const auto strides = parse_stage_strides(args.strides, "--strides");
    if (strides.size() != options.filters().size()) {
      throw CLI::ValidationError(
          "--strides",
          args.model + " has " + std::to_string(options.filters().size()) +
              " stages; got " + std::to_string(strides.size()) + " strides");
    }
    options.strides(strides);
  }
  diffstride::ResNet model(options);
  model->eval();
  diffstride::ForwardTrace trace;
  std::vector<std::vector<int64_t>> stages;
  {
    torch::NoGradGuard no_grad;
    model->forward_traced(
        torch::zeros({1, size[0], size[1], size[2]}), &trace, &stages);
  }

  std::cout << args.model << " with pooling '" << args.pooling << "', input "
            << args.input << ", " << args.classes << " classes\n\n"
            << std::left << std::setw(10) << "stage"
            << "output (C x H x W)\n";
  for (size_t i = 0; i < stages.size(); ++i) {
    const std::string name = i == 0 ? "stem"
                             : i + 1 == stages.size()
                                 ? "head"
                                 : "block " + std::to_string(i);
    std::cout << std::setw(10) << name << join(stages[i], 1) << "\n";
  }
  const auto strides = model->current_strides();
  if (!strides.empty()) {
    std::cout << "\nDiffStride layers (forward order): strides -> output\n";
    for (size_t i = 0; i < strides.size(); ++i) {
      std::cout << "  " << i + 1 << "  (" << std::setprecision(4)
                << strides[i][0] << ", " << strides[i][1] << ") -> "
                << trace.diffstride_outputs[i][0] << " x "
                << trace.diffstride_outputs[i][1] << "\n";
    }
  }
  std::cout << "\ntrainable parameters  "
            << with_thousands(model->trainable_parameter_count()) << "\n"
            << "multiply-adds         " << with_thousands(trace.multiply_adds)
            << " per example (convolutions and dense layer)\n";
  return 0;
}

}  // namespace diffstride_cli
