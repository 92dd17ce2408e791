#include "bench_command.h"

#include "cli_parsing.h"

#include <diffstride/models/resnet.h>
#include <diffstride/train/mixed_precision.h>
#include <diffstride/train/trainer.h>
#include <torch/torch.h>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

namespace diffstride_cli {

namespace {

// Peak resident memory of this process so far, in MiB.
double peak_memory_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux: KiB
}

// Runs `argv` (no shell: no argument is ever read as a command) and waits
// for it; the child gets SIGTERM if this process dies first (Ctrl-C ends the
// benchmark and its child alike). Returns its exit status (128 + signal
// when a signal ended it).
int run_child(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() == parent) {
      ::execv(args[0], args.data());
    }
    ::_exit(127);
  }
  if (pid < 0) {
    return 127;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The model, optimiser and one training step of `args`, on its device, in
// its precision and memory format, as the trainer runs them.
struct BenchStep {
  diffstride::ResNet model;
  torch::optim::SGD optimizer;
  torch::Tensor images, labels;
  torch::Device device;
  c10::ScalarType precision;

  void operator()() {
    optimizer.zero_grad();
    {
      const diffstride::AutocastGuard autocast(device, precision);
      torch::nn::functional::cross_entropy(model(images), labels).backward();
    }
    optimizer.step();
    model->constrain_strides();
    if (device.is_cuda()) {
      torch::cuda::synchronize();  // the step's time is the device's
    }
  }
};

BenchStep bench_step(const BenchArgs& args, c10::IntArrayRef size) {
  const auto device = diffstride::training_device(args.device, "--device");
  const auto precision = diffstride::parse_precision(args.precision);
  diffstride::check_precision_supported(precision, device, "--precision");
  torch::manual_seed(0);
  diffstride::ResNet model(diffstride::resnet_options(args.model)
                               .pooling(diffstride::parse_pooling(args.pooling))
                               .in_channels(size[0]));
  model->to(device);
  const auto format = args.channels_last ? at::MemoryFormat::ChannelsLast
                                         : at::MemoryFormat::Contiguous;
  if (args.channels_last) {
    diffstride::to_channels_last(model);
  }
  torch::optim::SGD optimizer(model->parameters(),
                              torch::optim::SGDOptions(0.01).momentum(0.9));
  auto images = torch::randn({args.batch, size[0], size[1], size[2]});
  auto labels = torch::randint(10, {args.batch}, torch::kLong);
  return {model,
          std::move(optimizer),
          images.to(device).contiguous(format),
          labels.to(device),
          device,
          precision};
}

// One pooling choice in this process: prints one table row.
int bench_one(const BenchArgs& args) {
  const auto size = parse_input_size(args.input, "--input");
  check_batch_values(args.batch, size, "--batch");
  auto step = bench_step(args, size);
  for (int64_t i = 0; i < args.warmup; ++i) {
    step();
  }
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < args.steps; ++i) {
    step();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::cerr << "\r  " << args.pooling << ": step " << i + 1 << "/"
              << args.steps << ", " << std::fixed << std::setprecision(2)
              << elapsed / (i + 1) << " s/step, ETA "
              << elapsed / (i + 1) * (args.steps - i - 1) << " s   "
              << std::flush;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count() /
      static_cast<double>(args.steps);
  std::cerr << "\n";
  std::cout << std::left << std::setw(12) << args.pooling << std::right
            << std::fixed << std::setprecision(3) << std::setw(10) << seconds
            << std::setprecision(1) << std::setw(12)
            << static_cast<double>(args.batch) / seconds << std::setprecision(0)
            << std::setw(12) << peak_memory_mib() << std::endl;
  return 0;
}

}  // namespace

CLI::App* add_bench_command(CLI::App& app, BenchArgs& args) {
  auto* command = app.add_subcommand(
      "bench",
      "time one training step (forward, backward, SGD) for each pooling "
      "choice: seconds per step, examples per second, peak memory");
  add_model_option(command, args.model);
  command
      ->add_option("--pooling",
                   args.pooling,
                   "the downsampling layer (default: all, "
                   "each in its own process so that peak memory is its own)")
      ->check(CLI::IsMember(diffstride::pooling_names()));
  command->add_option("--input", args.input, "input size CxHxW")
      ->capture_default_str();
  command->add_option("--batch", args.batch, "batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--steps", args.steps, "timed steps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--warmup", args.warmup, "untimed steps first")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command
      ->add_option("--device",
                   args.device,
                   "where to run: cpu, cuda, cuda:N or auto (as train.device)")
      ->capture_default_str();
  command
      ->add_option("--precision",
                   args.precision,
                   "autocast precision (as train.precision)")
      ->check(CLI::IsMember(diffstride::precision_names()))
      ->capture_default_str();
  command->add_flag("--channels-last",
                    args.channels_last,
                    "images and convolution weights in NHWC order");
  command->add_flag("--child", args.child)->group("");  // hidden
  return command;
}

int run_bench(const BenchArgs& args, int threads) {
  if (args.child) {
    return bench_one(args);
  }
  // Checked here too: a bad size is one error, not one per child.
  check_batch_values(
      args.batch, parse_input_size(args.input, "--input"), "--batch");
  std::cout << args.model << ", batch " << args.batch << ", input "
            << args.input << ", " << args.device << ", " << args.precision
            << (args.channels_last ? ", channels last" : "") << ", " << threads
            << " threads, mean of " << args.steps << " steps after "
            << args.warmup << " warm-up\n"
            << std::left << std::setw(12) << "pooling" << std::right
            << std::setw(10) << "s/step" << std::setw(12) << "examples/s"
            << std::setw(12) << "peak MiB" << std::endl;
  if (!args.pooling.empty()) {
    return bench_one(args);
  }
  // Each choice in a child process of this same program: peak memory is a
  // per-process figure, and a fork of a process that has run OpenMP threads
  // is not safe.
  char self[4096] = {};
  if (readlink("/proc/self/exe", self, sizeof(self) - 1) <= 0) {
    std::cerr << "error: cannot find this program's path to run the "
                 "poolings one by one; pass --pooling\n";
    return 1;
  }
  for (const auto& pooling : diffstride::pooling_names()) {
    std::vector<std::string> child = {self,
                                      "--threads",
                                      std::to_string(threads),
                                      "bench",
                                      "--child",
                                      "--model",
                                      args.model,
                                      "--pooling",
                                      pooling,
                                      "--input",
                                      args.input,
                                      "--batch",
                                      std::to_string(args.batch),
                                      "--steps",
                                      std::to_string(args.steps),
                                      "--warmup",
                                      std::to_string(args.warmup),
                                      "--device",
                                      args.device,
                                      "--precision",
                                      args.precision};
    if (args.channels_last) {
      child.push_back("--channels-last");
    }
    if (run_child(child) != 0) {
      std::cerr << "error: the benchmark of pooling '" << pooling
                << "' failed\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace diffstride_cli
