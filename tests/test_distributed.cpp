// Data-parallel training on c10d with Gloo on loopback. The tests start the
// ranks the way torchrun does: this same program again, once per rank, with
// RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set; the
// environment variable DIFFSTRIDE_TEST_ROLE tells a copy which rank's work
// to do (see main below).

#include <diffstride/data/batches.h>
#include <diffstride/nn/diff_stride.h>
#include <diffstride/train/distributed.h>
#include <diffstride/train/run_folder.h>
#include <diffstride/train/train_step.h>
#include <diffstride/train/trainer.h>

#include "support/tiny_run.h"
#include "test_helpers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using diffstride_test::scratch_folder;

// --- the ranks' side --------------------------------------------------------

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::string(v);
}

// Every parameter, flattened into one float64 vector.
torch::Tensor flat_parameters(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> parts;
  for (const auto& p : parameters) {
    parts.push_back(p.detach().to(torch::kDouble).reshape({-1}));
  }
  return torch::cat(parts);
}

// Trains the run whose config.toml is $CONFIG (resuming with $RESUME=1),
// writing the parameters after every step to $DUMP/rank<R>_step<S>.pt. Rank
// $DIE_RANK kills itself (SIGKILL) after step $DIE_AT_STEP; rank
// $INTERRUPT_RANK is interrupted (as by SIGINT) during step
// $INTERRUPT_AT_STEP + 1.
int train_role() {
  // $CONFIG_RANK<R> and $WORLD_SIZE_RANK<R>, where set, give this rank a
  // config and a number of processes of its own.
  const std::string rank = env_or("RANK", "0");
  const auto world = env_or(("WORLD_SIZE_RANK" + rank).c_str(), "");
  if (!world.empty()) {
    ::setenv("WORLD_SIZE", world.c_str(), 1);
  }
  const auto config = diffstride::load_train_config(
      env_or(("CONFIG_RANK" + rank).c_str(), env_or("CONFIG", "")), {});
  diffstride::TrainOptions options;
  options.resume = env_or("RESUME", "0") == "1";
  const fs::path dump = env_or("DUMP", "");
  const int64_t die_at = std::stoll(env_or("DIE_AT_STEP", "-1"));
  const bool dies = env_or("DIE_RANK", "-1") == rank;
  const int64_t interrupt_at = std::stoll(env_or("INTERRUPT_AT_STEP", "-1"));
  const bool interrupted = env_or("INTERRUPT_RANK", "-1") == rank;
  std::atomic<bool> interrupt{false};
  options.interrupt = &interrupt;
  options.after_step = [&](diffstride::ResNet& model, int64_t step) {
    torch::save(
        flat_parameters(model->parameters()),
        (dump / ("rank" + rank + "_step" + std::to_string(step) + ".pt"))
            .string());
    if (dies && step == die_at) {
      ::kill(::getpid(), SIGKILL);
    }
    if (interrupted && step == interrupt_at) {
      interrupt = true;  // as the tool's SIGINT handler does
    }
  };
  diffstride::train(config, options);
  return 0;
}

// A global batch (from the trainer's BatchMaker) of the tiny dataset in
// $DATA, this rank's share of it (the whole when $SHARDS is 1).
diffstride::Batch first_batch(const diffstride::Dataset& data,
                              int64_t shard,
                              int64_t shards) {
  diffstride::BatchMaker maker(data,
                               diffstride::Normalization{{0.3}, {0.3}},
                               diffstride::BatchOptions()
                                   .batch_size(8)
                                   .seed(5)
                                   .augment(true)
                                   .mixup_alpha(0.4)
                                   .shard(shard)
                                   .shards(shards));
  return maker.make_batch(maker.epoch_order(0), 0, 0);
}

// A float64 network without batch norm: convolution, DiffStride, dense (10
// classes, as the tiny dataset in Fashion-MNIST's format declares).
struct SmallNetImpl : torch::nn::Module {
  SmallNetImpl() {
    torch::manual_seed(3);
    conv = register_module(
        "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)));
    pool = register_module("pool", diffstride::DiffStride());
    const auto pooled = pool(conv(torch::zeros({1, 1, 12, 12})));
    fc = register_module("fc", torch::nn::Linear(pooled.numel(), 10));
    to(torch::kDouble);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return fc(pool(torch::relu(conv(x))).flatten(1));
  }
  torch::nn::Conv2d conv{nullptr};
  diffstride::DiffStride pool{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(SmallNet);

// One SGD step of SmallNet on `batch`, gradients averaged by `collectives`;
// returns the parameters after it.
torch::Tensor small_net_step(const diffstride::Batch& batch,
                             diffstride::Collectives& collectives) {
  SmallNet net;
  diffstride::GradientAverager averager(collectives,
                                        net->parameters(),
                                        /*bucket_bytes=*/256);
  torch::optim::SGD sgd(net->parameters(),
                        torch::optim::SGDOptions(0.5).momentum(0.9));
  sgd.zero_grad();
  diffstride::soft_cross_entropy(net(batch.images.to(torch::kDouble)),
                                 batch.targets.to(torch::kDouble))
      .backward();
  averager.finish();
  sgd.step();
  return flat_parameters(net->parameters());
}

// One step of SmallNet on this rank's half of the global batch, written to
// $DUMP/step_rank<R>.pt.
int gradient_role() {
  const auto data =
      diffstride::load_dataset("fashion_mnist", "train", env_or("DATA", ""));
  const auto env = diffstride::launcher_environment();
  diffstride::Collectives collectives(
      env, torch::Device(torch::kCPU), std::chrono::seconds(60));
  const auto after =
      small_net_step(first_batch(data, env.rank, env.world_size), collectives);
  torch::save(after,
              (fs::path(env_or("DUMP", "")) /
               ("step_rank" + std::to_string(env.rank) + ".pt"))
                  .string());
  return 0;
}

// --- the tests' side --------------------------------------------------------

// A TCP port free on loopback now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

struct Rank {
  pid_t pid = -1;
  int status = -1;
  Clock::time_point ended;
  fs::path log;
};

// Starts `world` copies of this program in role `role`, as torchrun would
// start ranks, with `extra` variables; their output goes to `folder`.
std::vector<Rank> start_ranks(const std::string& role,
                              int world,
                              const std::map<std::string, std::string>& extra,
                              const fs::path& folder) {
  const int port = free_port();
  std::vector<Rank> ranks(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      env.emplace_back(*e);
    }
    std::map<std::string, std::string> vars = extra;
    vars["DIFFSTRIDE_TEST_ROLE"] = role;
    vars["RANK"] = std::to_string(r);
    vars["LOCAL_RANK"] = std::to_string(r);
    vars["WORLD_SIZE"] = std::to_string(world);
    vars["LOCAL_WORLD_SIZE"] = std::to_string(world);
    vars["MASTER_ADDR"] = "127.0.0.1";
    vars["MASTER_PORT"] = std::to_string(port);
    for (const auto& [k, v] : vars) {
      env.push_back(k + "=" + v);
    }
    std::vector<char*> envp;
    for (auto& e : env) {
      envp.push_back(e.data());
    }
    envp.push_back(nullptr);
    auto& rank = ranks[static_cast<size_t>(r)];
    rank.log = folder / ("rank" + std::to_string(r) + "_" + role + ".log");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(
        &actions, 1, rank.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::string program = "/proc/self/exe";
    char* argv[] = {program.data(), nullptr};
    EXPECT_EQ(
        posix_spawn(
            &rank.pid, "/proc/self/exe", &actions, nullptr, argv, envp.data()),
        0);
    posix_spawn_file_actions_destroy(&actions);
  }
  return ranks;
}

// Waits for every rank, at most `limit`; kills the ones still running then.
void wait_ranks(std::vector<Rank>& ranks, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  size_t running = ranks.size();
  while (running > 0) {
    for (auto& rank : ranks) {
      if (rank.pid > 0 && rank.status == -1 &&
          ::waitpid(rank.pid, &rank.status, WNOHANG) == rank.pid) {
        rank.ended = Clock::now();
        --running;
      }
    }
    if (Clock::now() > deadline) {
      for (auto& rank : ranks) {
        if (rank.status == -1) {
          ::kill(rank.pid, SIGKILL);
          ::waitpid(rank.pid, &rank.status, 0);
          ADD_FAILURE() << "rank still running after " << limit.count()
                        << " s: " << rank.log;
        }
      }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool exited_cleanly(const Rank& rank) {
  return WIFEXITED(rank.status) && WEXITSTATUS(rank.status) == 0;
}

torch::Tensor load_tensor(const fs::path& path) {
  torch::Tensor t;
  torch::load(t, path.string());
  return t;
}

// The tiny run of tests/support for two ranks (a global batch of 16, 8 each;
// 2 steps per epoch, 3 epochs), written as the run's config file.
fs::path write_two_rank_config(const fs::path& root,
                               const std::string& name,
                               double timeout_seconds = 60) {
  auto config = diffstride_test::tiny_config(root / "data", root / name);
  config.train.threads = 1;
  config.train.collective_timeout_seconds = timeout_seconds;
  const auto path = root / (name + ".toml");
  std::ofstream(path) << diffstride::to_toml(config);
  return path;
}

// Every test here forms a Gloo process group.
#define REQUIRE_GLOO()                                                  \
  do {                                                                  \
    const auto built = diffstride::built_backends();                    \
    if (std::find(built.begin(), built.end(), "gloo") == built.end()) { \
      GTEST_SKIP() << "this build has no c10d Gloo backend (no gloo "   \
                      "headers when it was configured)";                \
    }                                                                   \
  } while (false)

std::map<std::string, std::string> train_vars(const fs::path& config,
                                              const fs::path& dump,
                                              bool resume = false) {
  fs::create_directories(dump);
  return {{"CONFIG", config.string()},
          {"DUMP", dump.string()},
          {"RESUME", resume ? "1" : "0"}};
}

std::vector<std::string> metrics_rows(const fs::path& run) {
  return diffstride_test::metrics_without_rate(run / "metrics.csv");
}

TEST(Distributed, TwoGlooRanksHoldIdenticalParametersAfterEveryStepAndLearn) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_identical");
  diffstride_test::write_tiny_idx(root / "data", 32, 16);
  const auto config = write_two_rank_config(root, "run");
  auto ranks = start_ranks("train", 2, train_vars(config, root / "dump"), root);
  wait_ranks(ranks, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(ranks[0])) << read_text(ranks[0].log);
  ASSERT_TRUE(exited_cleanly(ranks[1])) << read_text(ranks[1].log);
  // 32 examples / global batch 16 = 2 steps per epoch, 3 epochs.
  const auto initial =
      flat_parameters(diffstride::build_model(
                          diffstride::load_train_config(config.string()), 1, 10)
                          ->parameters());
  for (int step = 1; step <= 6; ++step) {
    const auto suffix = "_step" + std::to_string(step) + ".pt";
    const auto zero = load_tensor(root / "dump" / ("rank0" + suffix));
    const auto one = load_tensor(root / "dump" / ("rank1" + suffix));
    EXPECT_TRUE(torch::equal(zero, one)) << "step " << step;
    EXPECT_FALSE(torch::equal(zero, initial)) << "step " << step;
  }
  EXPECT_FALSE(fs::exists(root / "dump" / "rank0_step7.pt"));
  // Rank 0 alone wrote the folder: one event file, and metrics per epoch
  // whose training loss falls.
  int event_files = 0;
  for (const auto& entry : fs::directory_iterator(root / "run")) {
    event_files += entry.path().filename().string().rfind("events.", 0) == 0;
  }
  EXPECT_EQ(event_files, 1);
  std::ifstream csv(root / "run" / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  std::vector<double> losses;
  while (std::getline(csv, line)) {
    std::stringstream row(line);
    std::string cell;
    for (int column = 0; column <= 3; ++column) {
      std::getline(row, cell, ',');
    }
    losses.push_back(std::stod(cell));  // train/loss
  }
  ASSERT_EQ(header.substr(0, 42), "epoch,step,learning_rate,train_loss,train_");
  ASSERT_EQ(losses.size(), 3u);
  EXPECT_LT(losses[2], losses[0]);
  EXPECT_TRUE(fs::exists(root / "run" / "model.pt"));
}

TEST(Distributed, FirstStepOfTwoRanksEqualsOneProcessOnTheGlobalBatch) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_one_process");
  diffstride_test::write_tiny_idx(root / "data", 32, 16);
  auto ranks =
      start_ranks("gradient",
                  2,
                  {{"DATA", (root / "data").string()}, {"DUMP", root.string()}},
                  root);
  wait_ranks(ranks, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(ranks[0])) << read_text(ranks[0].log);
  ASSERT_TRUE(exited_cleanly(ranks[1])) << read_text(ranks[1].log);
  // The reference: one process, the whole global batch, no averaging.
  const auto data = diffstride::load_dataset(
      "fashion_mnist", "train", (root / "data").string());
  diffstride::Collectives one_process;
  const auto global = first_batch(data, 0, 1);
  // The shards are the global batch's rows.
  const auto half0 = first_batch(data, 0, 2), half1 = first_batch(data, 1, 2);
  EXPECT_TRUE(
      torch::equal(torch::cat({half0.images, half1.images}), global.images));
  EXPECT_TRUE(
      torch::equal(torch::cat({half0.targets, half1.targets}), global.targets));
  const auto expected = small_net_step(global, one_process);
  const auto rank0 = load_tensor(root / "step_rank0.pt");
  const auto rank1 = load_tensor(root / "step_rank1.pt");
  EXPECT_TRUE(torch::equal(rank0, rank1));
  EXPECT_LT(diffstride_test::relative_error(rank0, expected), 1e-10);
  // The step changed the parameters: the comparison is not of two copies of
  // the initial values.
  EXPECT_GT((expected - flat_parameters(SmallNet()->parameters()))
                .abs()
                .max()
                .item<double>(),
            1e-3);
}

TEST(Distributed, KilledRankStopsTheOtherWithinTheTimeoutAndTheRunResumes) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_killed");
  diffstride_test::write_tiny_idx(root / "data", 32, 16);
  constexpr double kTimeout = 10;
  // Uninterrupted, for reference.
  const auto whole = write_two_rank_config(root, "whole", kTimeout);
  auto reference =
      start_ranks("train", 2, train_vars(whole, root / "whole_dump"), root);
  wait_ranks(reference, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(reference[0])) << read_text(reference[0].log);

  // Rank 1 is killed after step 3, in epoch 2 (the checkpoint of epoch 1
  // holds step 2).
  const auto config = write_two_rank_config(root, "run", kTimeout);
  auto vars = train_vars(config, root / "dump");
  vars["DIE_RANK"] = "1";
  vars["DIE_AT_STEP"] = "3";
  auto ranks = start_ranks("train", 2, vars, root);
  wait_ranks(ranks, std::chrono::seconds(120));
  ASSERT_TRUE(WIFSIGNALED(ranks[1].status)) << read_text(ranks[1].log);
  EXPECT_FALSE(exited_cleanly(ranks[0]));
  const double waited =
      std::chrono::duration<double>(ranks[0].ended - ranks[1].ended).count();
  EXPECT_LT(waited, kTimeout + 5)
      << "rank 0 stopped " << waited << " s after rank 1 died";
  const auto log = read_text(ranks[0].log);
  EXPECT_NE(log.find("rank 0 of 2: "), std::string::npos) << log;
  EXPECT_NE(log.find("another rank has probably died or stopped answering"),
            std::string::npos)
      << log;
  // No half-written file; the epoch-1 checkpoint is the one there.
  for (const auto& entry : fs::directory_iterator(root / "run")) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos)
        << entry.path();
  }
  EXPECT_EQ(metrics_rows(root / "run").size(), 2u);  // header + epoch 1

  // Resumed on two ranks, it ends where the uninterrupted run ends.
  auto resumed = start_ranks(
      "train", 2, train_vars(config, root / "resumed_dump", true), root);
  wait_ranks(resumed, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(resumed[0])) << read_text(resumed[0].log);
  ASSERT_TRUE(exited_cleanly(resumed[1])) << read_text(resumed[1].log);
  EXPECT_FALSE(fs::exists(root / "resumed_dump" / "rank0_step2.pt"));
  for (int step = 3; step <= 6; ++step) {
    const auto name = "rank0_step" + std::to_string(step) + ".pt";
    EXPECT_TRUE(torch::equal(load_tensor(root / "resumed_dump" / name),
                             load_tensor(root / "whole_dump" / name)))
        << "step " << step;
  }
  EXPECT_EQ(metrics_rows(root / "run"), metrics_rows(root / "whole"));
}

// One rank interrupted: the ranks agree on it where they read the step
// figures (every train.log_every_steps steps, here 4, and at the end of an
// epoch), so both stop after the same step, the next read, and the run
// resumes to the uninterrupted run's end.
TEST(Distributed, InterruptOfOneRankStopsBothAtTheNextRead) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_interrupt");
  diffstride_test::write_tiny_idx(root / "data", 96, 16);  // 6 steps/epoch
  const auto write_config = [&](const std::string& name) {
    auto config = diffstride_test::tiny_config(root / "data", root / name);
    config.train.threads = 1;
    config.train.epochs = 2;
    config.train.log_every_steps = 4;
    const auto path = root / (name + ".toml");
    std::ofstream(path) << diffstride::to_toml(config);
    return path;
  };
  const auto whole = write_config("whole");
  auto reference =
      start_ranks("train", 2, train_vars(whole, root / "whole_dump"), root);
  wait_ranks(reference, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(reference[0])) << read_text(reference[0].log);

  const auto config = write_config("run");
  auto vars = train_vars(config, root / "dump");
  vars["INTERRUPT_RANK"] = "1";
  vars["INTERRUPT_AT_STEP"] = "1";
  auto ranks = start_ranks("train", 2, vars, root);
  wait_ranks(ranks, std::chrono::seconds(120));
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(exited_cleanly(ranks[rank])) << read_text(ranks[rank].log);
    const auto prefix = "rank" + std::to_string(rank) + "_step";
    EXPECT_TRUE(fs::exists(root / "dump" / (prefix + "4.pt"))) << rank;
    EXPECT_FALSE(fs::exists(root / "dump" / (prefix + "5.pt"))) << rank;
  }
  auto resumed = start_ranks(
      "train", 2, train_vars(config, root / "resumed_dump", true), root);
  wait_ranks(resumed, std::chrono::seconds(120));
  ASSERT_TRUE(exited_cleanly(resumed[0])) << read_text(resumed[0].log);
  EXPECT_FALSE(fs::exists(root / "resumed_dump" / "rank0_step4.pt"));
  EXPECT_TRUE(
      torch::equal(load_tensor(root / "resumed_dump" / "rank0_step12.pt"),
                   load_tensor(root / "whole_dump" / "rank0_step12.pt")));
  EXPECT_EQ(metrics_rows(root / "run"), metrics_rows(root / "whole"));
}

// Ranks started with different runs (model, batch, seed, data, number of
// processes) stop at start-up, each with the same error naming the first
// differing key, exit status 2, before any collective: never Gloo's abort
// on mismatched sizes.
TEST(Distributed, RanksThatDisagreeStopNamingTheKey) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_disagree");
  diffstride_test::write_tiny_idx(root / "data", 32, 16);
  diffstride_test::write_tiny_idx(root / "other_data", 48, 16);
  struct Case {
    std::string name, key;
    std::function<void(diffstride::TrainConfig&)> change;
    std::string world_size_of_rank1 = "";
  };
  const std::vector<Case> cases = {
      {"filters",
       "model.filters",
       [](auto& c) {
         c.model.filters = {4, 16};
       }},
      {"batch", "data.batch_size", [](auto& c) { c.data.batch_size = 32; }},
      {"seed", "train.seed", [](auto& c) { c.train.seed = 9; }},
      {"dataset",
       "data.train",
       [&](auto& c) { c.data.data_dir = (root / "other_data").string(); }},
      {"world", "processes", [](auto&) {}, "4"}};
  for (const auto& test : cases) {
    const auto same = write_two_rank_config(root, test.name);
    auto other = diffstride::load_train_config(same.string());
    test.change(other);
    const auto other_path = root / (test.name + "_rank1.toml");
    std::ofstream(other_path) << diffstride::to_toml(other);
    auto vars = train_vars(same, root / (test.name + "_dump"));
    vars["CONFIG_RANK1"] = other_path.string();
    if (!test.world_size_of_rank1.empty()) {
      vars["WORLD_SIZE_RANK1"] = test.world_size_of_rank1;
    }
    auto ranks = start_ranks("train", 2, vars, root);
    wait_ranks(ranks, std::chrono::seconds(60));
    for (const auto& rank : ranks) {
      const auto log = read_text(rank.log);
      EXPECT_TRUE(WIFEXITED(rank.status) && WEXITSTATUS(rank.status) == 2)
          << test.name << ": " << log;
      EXPECT_NE(log.find("rank 1 was started with another run than rank 0: " +
                         test.key + " differs"),
                std::string::npos)
          << test.name << ": " << log;
    }
    EXPECT_FALSE(fs::exists(root / test.name / "checkpoint.pt")) << test.name;
  }
}

TEST(Distributed, CheckpointOfTwoRanksResumesInOneProcess) {
  REQUIRE_GLOO();
  const auto root = scratch_folder("ddp_to_one");
  diffstride_test::write_tiny_idx(root / "data", 32, 16);
  const auto config = write_two_rank_config(root, "run");
  auto vars = train_vars(config, root / "dump");
  vars["DIE_RANK"] = "1";
  vars["DIE_AT_STEP"] = "5";  // epoch 3; epoch 2's checkpoint holds step 4
  auto ranks = start_ranks("train", 2, vars, root);
  wait_ranks(ranks, std::chrono::seconds(120));
  ASSERT_TRUE(WIFSIGNALED(ranks[1].status));
  // This process has no launcher variables: one process, the whole batch.
  auto resumed = diffstride::load_train_config(config.string());
  diffstride::TrainOptions options;
  options.resume = true;
  std::vector<int64_t> steps;
  options.after_step = [&](diffstride::ResNet&, int64_t step) {
    steps.push_back(step);
  };
  const auto epochs = diffstride::train(resumed, options);
  ASSERT_EQ(epochs.size(), 1u);
  EXPECT_EQ(epochs[0].epoch, 3);
  EXPECT_EQ(steps, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(metrics_rows(root / "run").size(), 4u);
  EXPECT_TRUE(fs::exists(root / "run" / "model.pt"));
}

TEST(Distributed, LauncherVariablesAreChecked) {
  const auto with = [](std::map<std::string, std::string> vars) {
    for (const auto& [k, v] : vars) {
      ::setenv(k.c_str(), v.c_str(), 1);
    }
    struct Unset {
      std::map<std::string, std::string> vars;
      ~Unset() {
        for (const auto& kv : vars) {
          ::unsetenv(kv.first.c_str());
        }
      }
    } unset{vars};
    diffstride::launcher_environment();
  };
  diffstride_test::expect_error_containing(
      [&] {
        with({{"WORLD_SIZE", "2"}, {"RANK", "2"}});
      },
      "RANK=2: expected a rank in [0, WORLD_SIZE = 2)");
  diffstride_test::expect_error_containing(
      [&] {
        with({{"WORLD_SIZE", "two"}});
      },
      "WORLD_SIZE=two: expected an integer");
  diffstride_test::expect_error_containing(
      [&] {
        with({{"MASTER_PORT", "70000"}});
      },
      "MASTER_PORT=70000: expected a TCP port in 1-65535");
  ::setenv("WORLD_SIZE", "3", 1);
  const auto config =
      diffstride_test::tiny_run_config("ddp_uneven_batch");  // batch 16
  diffstride_test::expect_error_containing(
      [&] { diffstride::train(config); },
      "data.batch_size 16 is the global batch: it must split evenly across "
      "the 3 processes");
  ::unsetenv("WORLD_SIZE");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string role = env_or("DIFFSTRIDE_TEST_ROLE", "");
  if (!role.empty()) {
    try {
      return role == "train" ? train_role() : gradient_role();
    } catch (const std::exception& e) {
      const auto* error = dynamic_cast<const c10::Error*>(&e);
      std::cerr << "error: "
                << (error ? error->what_without_backtrace() : e.what())
                << std::endl;
      return 2;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
