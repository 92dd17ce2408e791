#include "train_command.h"

#include "cli_parsing.h"
#include "signals.h"

#include <diffstride/train/distributed.h>
#include <diffstride/train/trainer.h>
#include <torch/torch.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <stdexcept>

namespace diffstride_cli {

CLI::App* add_train_command(CLI::App& app, TrainArgs& args) {
  auto* command = app.add_subcommand(
      "train",
      "train a model as a config says (default: a small DiffStride ResNet on "
      "Fashion-MNIST); writes TensorBoard events, metrics.csv, checkpoints and "
      "the final model to the output folder");
  command->add_option("--config", args.config, "TOML config (see configs/)")
      ->check(not_empty());
  command->add_option(
      "--set",
      args.overrides,
      "override a config key, e.g. --set model.pooling=spectral "
      "--set model.strides=1,1,3,2,3 (repeatable)");
  command->add_option("--out", args.out, "output folder (overrides train.out)")
      ->check(not_empty());
  command->add_option(
      "--device",
      args.device,
      "auto, cpu, cuda or cuda:N (overrides train.device; auto: CUDA when "
      "available)");
  command
      ->add_option("--resume",
                   args.resume,
                   "continue the run in this folder from its last checkpoint")
      ->check(not_empty());
  command
      ->add_option("--stop-after-steps",
                   args.stop_after_steps,
                   "stop after this many steps, with a checkpoint (continue "
                   "with --resume); for benchmarks and trials")
      ->check(CLI::PositiveNumber);
  command->add_flag("--help-config",
                    args.help_config,
                    "list every config key (type, default, meaning) and exit");
  return command;
}

CLI::App* add_eval_command(CLI::App& app, EvalArgs& args) {
  auto* command = app.add_subcommand("eval",
                                     "test loss and accuracy of a checkpoint "
                                     "(its run's config.toml beside it)");
  command
      ->add_option(
          "--checkpoint", args.checkpoint, "checkpoint.pt or model.pt of a run")
      ->required()
      ->check(not_empty());
  command
      ->add_option("--dump-logits",
                   args.dump_logits,
                   "also write the first 64 test examples (normalised), "
                   "labels and logits to this file, for Python's "
                   "torch.load; a new path unless --force")
      ->check(not_empty());
  command->add_flag("--force",
                    args.force,
                    "replace an existing --dump-logits file (never one of "
                    "the run's own files)");
  return command;
}

namespace {

// The run's config: a resumed run's own, or the one --config and --set make.
diffstride::TrainConfig run_config(const TrainArgs& args) {
  if (!args.resume.empty()) {
    if (!args.config.empty() || !args.overrides.empty()) {
      throw CLI::ValidationError(
          "--resume",
          "a resumed run keeps its own config: drop --config and --set");
    }
    auto config = diffstride::load_train_config(
        (std::filesystem::path(args.resume) / "config.toml").string());
    config.train.out = args.resume;
    // Checkpoints are device-independent: a run may resume elsewhere.
    if (!args.device.empty()) {
      config.train.device = args.device;
    }
    return config;
  }
  auto overrides = args.overrides;
  if (!args.device.empty()) {
    overrides.push_back("train.device=" + args.device);
  }
  auto config = diffstride::load_train_config(args.config, overrides);
  if (!args.out.empty()) {
    config.train.out = args.out;
  }
  return config;
}

}  // namespace

int run_train(const TrainArgs& args, int threads) {
  if (args.help_config) {
    std::cout << diffstride::train_config_reference();
    return 0;
  }
  auto config = run_config(args);
  diffstride::TrainOptions options;
  options.resume = !args.resume.empty();
  // The machine's threads are shared by the processes a launcher started on
  // it.
  const auto launcher = diffstride::launcher_environment();
  if (config.train.threads == 0) {
    config.train.threads =
        std::max<int64_t>(1, threads / launcher.local_world_size);
  }
  options.interrupt = stop_on_signals();
  if (std::getenv("TORCHELASTIC_RUN_ID") != nullptr) {
    // A worker of torchrun stops (with a checkpoint) when its launcher dies,
    // rather than train on unsupervised; if it has died already (this
    // process was adopted by init), it does not start.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() == 1) {
      throw std::runtime_error("torchrun, which started this rank, is gone");
    }
  }
  options.progress = &std::cerr;
  options.stop_after_steps = args.stop_after_steps;
  if (launcher.rank != 0) {
    diffstride::train(config, options);
    return 0;
  }
  std::cout << "training " << config.model.factory << " ("
            << config.model.pooling << ") on " << config.data.dataset << " for "
            << config.train.epochs << " epochs into " << config.train.out
            << std::endl;
  const auto start = std::chrono::steady_clock::now();
  const auto epochs = diffstride::train(config, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  // Stopped early (interrupted, --stop-after-steps): the progress output
  // said where; there is no final result.
  if (options.interrupt->load() || epochs.empty() ||
      epochs.back().epoch < config.train.epochs) {
    return 0;
  }
  const auto& last = epochs.back();
  std::cout << std::fixed << std::setprecision(4) << "final test accuracy "
            << last.test_accuracy << ", test loss " << last.test_loss
            << " after " << last.epoch << " epochs; " << std::setprecision(0)
            << seconds << " s in this run\n";
  std::cout << "learned strides:";
  for (const auto& s : last.strides) {
    std::cout << std::setprecision(3) << " (" << s[0] << ", " << s[1] << ")";
  }
  std::cout << "\n";
  return 0;
}

int run_eval(const EvalArgs& args) {
  // The dump first: a refused path stops the command before the evaluation.
  if (!args.dump_logits.empty()) {
    diffstride::dump_test_logits(
        args.checkpoint, args.dump_logits, 64, args.force);
  }
  const auto result = diffstride::evaluate_checkpoint(args.checkpoint);
  std::cout << std::fixed << std::setprecision(4) << "test loss " << result.loss
            << ", test accuracy " << result.accuracy << " (" << result.examples
            << " examples)\n";
  return 0;
}

}  // namespace diffstride_cli
