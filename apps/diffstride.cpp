// The diffstride command-line tool. Subcommands:
//   layer   run the three pooling layers on one input size and show what they
//           do (output shapes, DiffStride's floored strides and their
//           gradient, time per forward+backward).
//   summary a model's stage shapes, DiffStride output sizes, parameters and
//           multiply-adds for one input size.
//   bench   one training step of a model timed for each pooling choice.
//   data    what a dataset holds, split by split.
//   train   train a model from a config (default: Fashion-MNIST, DiffStride).
//   eval    test loss and accuracy of a checkpoint.
//   sweep   train every combination of config values, one folder each.
//   report  tables and plots of sweeps and runs.

#include "bench_command.h"
#include "cli_parsing.h"
#include "data_command.h"
#include "signals.h"
#include "summary_command.h"
#include "sweep_command.h"
#include "train_command.h"

#include <diffstride/diffstride.h>
#include <diffstride/train/config.h>

#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

namespace {

std::string shape(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

int run_layer(const std::string& input_text,
              std::vector<double> strides,
              double smoothness,
              int64_t batch) {
  const auto size = diffstride_cli::parse_input_size(input_text, "--input");
  if (strides.size() == 1) {
    strides.push_back(strides[0]);
  }
  diffstride_cli::check_batch_values(batch, size, "--batch");
  const auto x = torch::randn({batch, size[0], size[1], size[2]});

  diffstride::DiffStride diff_stride(diffstride::DiffStrideOptions()
                                         .strides({strides[0], strides[1]})
                                         .smoothness_factor(smoothness));
  const auto start = std::chrono::steady_clock::now();
  const auto y = diff_stride(x);
  y.square().mean().backward();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const auto used = diff_stride->current_strides();
  const auto grad = diff_stride->strides.grad();

  const auto spectral = diffstride::FixedSpectralPooling(
      diffstride::FixedSpectralPoolingOptions({strides[0], strides[1]}))(x);
  const auto spatial =
      diffstride::SpatialPooling(diffstride::SpatialPoolingOptions(
          {static_cast<int64_t>(std::ceil(strides[0])),
           static_cast<int64_t>(std::ceil(strides[1]))}))(x);

  std::cout << std::setprecision(6) << "input                 " << shape(x)
            << "\n"
            << diff_stride << "\n"
            << "  output              " << shape(y) << "\n"
            << "  strides used        (" << used[0] << ", " << used[1] << ")\n"
            << "  d mean(y^2) / d s   (" << grad[0].item<double>() << ", "
            << grad[1].item<double>() << ")\n"
            << "  forward+backward    " << seconds * 1e3 << " ms\n"
            << "FixedSpectralPooling  output " << shape(spectral) << "\n"
            << "SpatialPooling        output " << shape(spatial)
            << " (strides rounded up)\n";
  return 0;
}

struct LayerArgs {
  std::string input = "3x32x32";
  std::vector<double> strides = {2.0, 2.0};
  double smoothness = 4.0;
  int64_t batch = 8;
};

CLI::App* add_layer_command(CLI::App& app, LayerArgs& args) {
  auto* layer = app.add_subcommand(
      "layer", "show what the pooling layers do to one input size");
  layer->add_option("--input", args.input, "input size CxHxW")
      ->capture_default_str();
  layer
      ->add_option("--strides", args.strides, "stride, or height,width strides")
      ->delimiter(',')
      ->expected(1, 2)
      ->capture_default_str();
  layer->add_option("--smoothness", args.smoothness, "smoothness factor R")
      ->capture_default_str();
  layer->add_option("--batch", args.batch, "batch size")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return layer;
}

// Every subcommand: its arguments, filled by the parser, and its CLI::App.
struct Commands {
  explicit Commands(CLI::App& app)
      : layer(add_layer_command(app, layer_args)),
        summary(diffstride_cli::add_summary_command(app, summary_args)),
        bench(diffstride_cli::add_bench_command(app, bench_args)),
        data(diffstride_cli::add_data_command(app, data_args)),
        train(diffstride_cli::add_train_command(app, train_args)),
        eval(diffstride_cli::add_eval_command(app, eval_args)),
        sweep(diffstride_cli::add_sweep_command(app, sweep_args)),
        report(diffstride_cli::add_report_command(app, report_args)) {}

  // Runs the one the command line chose.
  int run(int threads, const char* argv0) const;

  LayerArgs layer_args;
  diffstride_cli::SummaryArgs summary_args;
  diffstride_cli::BenchArgs bench_args;
  diffstride_cli::DataArgs data_args;
  diffstride_cli::TrainArgs train_args;
  diffstride_cli::EvalArgs eval_args;
  diffstride_cli::SweepArgs sweep_args;
  diffstride_cli::ReportArgs report_args;
  CLI::App *layer, *summary, *bench, *data, *train, *eval, *sweep, *report;
};

int Commands::run(int threads, const char* argv0) const {
  const auto& l = layer_args;
  if (*layer) {
    return run_layer(l.input, l.strides, l.smoothness, l.batch);
  }
  if (*summary) {
    return diffstride_cli::run_summary(summary_args);
  }
  if (*bench) {
    return diffstride_cli::run_bench(bench_args, threads);
  }
  if (*data) {
    return diffstride_cli::run_data(data_args);
  }
  if (*train) {
    return diffstride_cli::run_train(train_args, threads);
  }
  if (*eval) {
    return diffstride_cli::run_eval(eval_args);
  }
  if (*sweep) {
    return diffstride_cli::run_sweep(sweep_args, threads, argv0);
  }
  if (*report) {
    return diffstride_cli::run_report(report_args);
  }
  return 0;
}

// Runs `command`; any error becomes one line "error: ..." and status 2.
template <typename Command>
int with_error_line(const Command& command) {
  try {
    return command();
  } catch (const CLI::Error& error) {
    std::cerr << "error: " << error.what() << "\n";
  } catch (const c10::Error& error) {
    std::cerr << "error: " << error.what_without_backtrace() << "\n";
  } catch (const std::filesystem::filesystem_error& error) {
    // Paths too long, symbolic link loops, a file where a folder should be.
    std::cerr << "error: " << error.what() << "\n";
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
  } catch (...) {
    std::cerr << "error: unexpected failure (an exception of unknown type)\n";
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"diffstride: learnable strides for convolutional networks"};
  app.require_subcommand(1);
  int threads =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--threads", threads, "intra-op threads (default: all cores)")
      ->check(diffstride_cli::thread_count());
  const Commands commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& done) {  // --help
    return app.exit(done);
  } catch (const CLI::ParseError& error) {
    // As every other error of the tool: one line, status 2.
    std::cerr << "error: " << error.what() << " (see --help)\n";
    return 2;
  }
  torch::set_num_threads(threads);
  if (!*commands.train && !*commands.sweep) {
    diffstride_cli::exit_on_signals();  // nothing to save
  }
  return with_error_line([&] { return commands.run(threads, argv[0]); });
}
