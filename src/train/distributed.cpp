#include <diffstride/train/distributed.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if defined(DIFFSTRIDE_WITH_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(DIFFSTRIDE_WITH_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <thread>

namespace diffstride {

namespace {

// Gloo and NCCL share a base class with the collectives: ProcessGroup in
// LibTorch 1.x, Backend from 2.0 on.
#if TORCH_VERSION_MAJOR >= 2
using GroupBase = c10d::Backend;
#else
using GroupBase = c10d::ProcessGroup;
#endif

// An integer environment variable; `fallback` when unset.
int64_t integer_from_environment(const char* name, int64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  TORCH_CHECK(*end == '\0' && errno == 0,
              "environment variable ",
              name,
              "=",
              text,
              ": expected an integer");
  return value;
}

// An exception's message without LibTorch's backtrace.
std::string message_of(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// The first line where `b` differs from `a`, as "KEY differs (rank 0: A;
// that rank: B)"; empty when they are equal.
std::string first_difference(const std::string& a, const std::string& b) {
  std::istringstream in_a(a), in_b(b);
  std::string line_a, line_b;
  while (true) {
    const bool more_a = static_cast<bool>(std::getline(in_a, line_a));
    const bool more_b = static_cast<bool>(std::getline(in_b, line_b));
    if (!more_a && !more_b) {
      return "";
    }
    if (!more_a || !more_b || line_a != line_b) {
      const auto& line = more_a ? line_a : line_b;
      const auto name = line.substr(0, line.find(" = "));
      const auto value = [](bool more, const std::string& text) {
        return more ? text.substr(std::min(text.size(), text.find(" = ") + 3))
                    : std::string("absent");
      };
      return name + " differs (rank 0: " + value(more_a, line_a) +
             "; that rank: " + value(more_b, line_b) + ")";
    }
  }
}

void stop_if_interrupted(const std::atomic<bool>* interrupt) {
  TORCH_CHECK(interrupt == nullptr || !interrupt->load(),
              "stopped by a signal while waiting for the other ranks; "
              "nothing was trained yet");
}

// PyTorch >= 2.4 asks for the libuv store backend by default, and a build
// without libuv (Debian's 2.6) refuses it; the classic backend speaks the
// same protocol. True when this LibTorch has the option and it was on.
template <typename Options>
auto use_classic_store_backend(Options& options, int)
    -> decltype(options.useLibUV, bool()) {
  const bool was_on = options.useLibUV;
  options.useLibUV = false;
  return was_on;
}

template <typename Options>
bool use_classic_store_backend(Options&, long) {
  return false;  // LibTorch 1.13: no such option, no libuv
}

// The rendezvous store: rank 0 serves it (unless torchrun does) without
// waiting for the others; a client connects in short attempts until
// `timeout`, so that `interrupt` ends the wait within seconds.
c10::intrusive_ptr<c10d::Store> connect_store(
    const LauncherEnvironment& env,
    std::chrono::milliseconds timeout,
    const std::atomic<bool>* interrupt) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(env.master_port);
  options.isServer = env.rank == 0 && !env.store_hosted_by_launcher;
  options.numWorkers = static_cast<std::size_t>(env.world_size);
  options.waitWorkers = false;
  for (;;) {
    options.timeout = options.isServer ? timeout
                                       : std::min<std::chrono::milliseconds>(
                                             timeout, std::chrono::seconds(2));
    try {
      auto store =
          c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
      store->setTimeout(timeout);
      return store;
    } catch (const std::exception& error) {
      stop_if_interrupted(interrupt);
      if (std::string(error.what()).find("libuv") != std::string::npos &&
          use_classic_store_backend(options, 0)) {
        continue;
      }
      if (options.isServer || std::chrono::steady_clock::now() > deadline) {
        throw;
      }
    }
  }
}

// Waits until `key` is in `store`, checking `interrupt` every 50 ms;
// false if `deadline` passes first.
bool wait_for_key(c10d::Store& store,
                  const std::string& key,
                  std::chrono::steady_clock::time_point deadline,
                  const std::atomic<bool>* interrupt) {
  while (!store.check({key})) {
    stop_if_interrupted(interrupt);
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace

LauncherEnvironment launcher_environment() {
  LauncherEnvironment env;
  env.world_size = integer_from_environment("WORLD_SIZE", 1);
  TORCH_CHECK(env.world_size >= 1,
              "environment variable WORLD_SIZE=",
              env.world_size,
              ": expected the number of processes, >= 1");
  env.rank = integer_from_environment("RANK", 0);
  TORCH_CHECK(env.rank >= 0 && env.rank < env.world_size,
              "environment variable RANK=",
              env.rank,
              ": expected a rank in [0, WORLD_SIZE = ",
              env.world_size,
              ")");
  env.local_world_size =
      integer_from_environment("LOCAL_WORLD_SIZE", env.world_size);
  TORCH_CHECK(env.local_world_size >= 1,
              "environment variable LOCAL_WORLD_SIZE=",
              env.local_world_size,
              ": expected the number of processes on this machine, >= 1");
  env.local_rank = integer_from_environment("LOCAL_RANK", env.rank);
  TORCH_CHECK(env.local_rank >= 0,
              "environment variable LOCAL_RANK=",
              env.local_rank,
              ": expected a rank >= 0 on this machine");
  if (const char* addr = std::getenv("MASTER_ADDR");
      addr != nullptr && *addr != '\0') {
    env.master_addr = addr;
  }
  env.master_port = integer_from_environment("MASTER_PORT", env.master_port);
  TORCH_CHECK(env.master_port >= 1 && env.master_port <= 65535,
              "environment variable MASTER_PORT=",
              env.master_port,
              ": expected a TCP port in 1-65535");
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  env.store_hosted_by_launcher =
      agent_store != nullptr && std::string(agent_store) == "True";
  env.attempt = integer_from_environment("TORCHELASTIC_RESTART_COUNT", 0);
  return env;
}

std::vector<std::string> built_backends() {
  std::vector<std::string> names;
#if defined(DIFFSTRIDE_WITH_GLOO)
  names.emplace_back("gloo");
#endif
#if defined(DIFFSTRIDE_WITH_NCCL)
  names.emplace_back("nccl");
#endif
  return names;
}

struct Collectives::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<GroupBase> backend;
  std::string name;
};

class Collectives::Pending {
 public:
  std::vector<at::Tensor> tensors;
  c10::intrusive_ptr<c10d::Work> work;
  std::string what;
};

Collectives::Collectives() = default;
Collectives::~Collectives() = default;

Collectives::Collectives(const LauncherEnvironment& environment,
                         const c10::Device& device,
                         std::chrono::milliseconds timeout,
                         const std::string& description,
                         const std::atomic<bool>* interrupt)
    : rank_(environment.rank),
      world_size_(environment.world_size),
      timeout_(timeout),
      interrupt_(interrupt) {
  if (world_size_ == 1) {
    return;
  }
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::PrefixStore>(
        "diffstride/attempt_" + std::to_string(environment.attempt),
        connect_store(environment, timeout, interrupt));
  } catch (const std::exception& e) {
    TORCH_CHECK(false,
                where(),
                "could not meet the other ranks at MASTER_ADDR:MASTER_PORT = ",
                environment.master_addr,
                ":",
                environment.master_port,
                " within ",
                timeout.count() / 1000.0,
                " s (is every rank started, with the same address and port?): ",
                message_of(e));
  }
  group_ = std::make_unique<Group>();
  group_->store = store;
  // Before the process group: ranks that disagree on their number would
  // fail its rendezvous with Gloo's own message.
  check_agreement(description);
  try {
    if (device.is_cuda()) {
#if defined(DIFFSTRIDE_WITH_NCCL)
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group_->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          store,
          static_cast<int>(rank_),
          static_cast<int>(world_size_),
          options);
      group_->name = "nccl";
#endif
    }
#if defined(DIFFSTRIDE_WITH_GLOO)
    if (!group_->backend) {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      group_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
          store,
          static_cast<int>(rank_),
          static_cast<int>(world_size_),
          options);
      group_->name = "gloo";
    }
#endif
  } catch (const std::exception& e) {
    TORCH_CHECK(
        false, where(), "could not form the process group: ", message_of(e));
  }
  TORCH_CHECK(group_->backend,
              where(),
              "this build of diffstride has no c10d backend for ",
              device.str(),
              " tensors (Gloo for the CPU needs the gloo headers, NCCL for "
              "CUDA needs nccl.h, when diffstride is configured)");
}

std::string Collectives::where() const {
  return "rank " + std::to_string(rank_) + " of " +
         std::to_string(world_size_) + ": ";
}

std::string Collectives::backend() const {
  return group_ ? group_->name : "none";
}

void Collectives::wait(Pending& pending) {
  try {
    pending.work->wait();
  } catch (const std::exception& e) {
    TORCH_CHECK(false,
                where(),
                pending.what,
                " across ranks failed; another rank has probably died or "
                "stopped answering (c10d ",
                backend(),
                ": ",
                message_of(e),
                ")");
  }
}

std::unique_ptr<Collectives::Pending> Collectives::start_sum(
    const at::Tensor& tensor) {
  auto pending = std::make_unique<Pending>();
  pending->what = "a sum";
  if (world_size_ == 1) {
    return pending;
  }
  pending->tensors = {tensor};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  pending->work = group_->backend->allreduce(pending->tensors, options);
  return pending;
}

void Collectives::sum(const at::Tensor& tensor) {
  if (world_size_ == 1) {
    return;
  }
  auto pending = start_sum(tensor);
  wait(*pending);
}

void Collectives::average(const std::vector<at::Tensor>& tensors) {
  if (world_size_ == 1) {
    return;
  }
  std::vector<std::unique_ptr<Pending>> pending;
  for (const auto& t : tensors) {
    TORCH_CHECK(t.is_floating_point(),
                "Collectives::average: expected floating-point tensors, got ",
                t.scalar_type());
    pending.push_back(start_sum(t));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    wait(*pending[i]);
    tensors[i].div_(static_cast<double>(world_size_));
  }
}

std::string Collectives::read_description(int64_t rank,
                                          TimePoint deadline) const {
  TORCH_CHECK(wait_for_key(*group_->store,
                           "agreement/rank_" + std::to_string(rank),
                           deadline,
                           interrupt_),
              where(),
              "rank ",
              rank,
              " did not describe its run within ",
              timeout_.count() / 1000.0,
              " s (did it die, or never start?)");
  const auto bytes =
      group_->store->get("agreement/rank_" + std::to_string(rank));
  return std::string(bytes.begin(), bytes.end());
}

std::string Collectives::first_disagreement(const std::string& description,
                                            TimePoint deadline) const {
  // Rank 0's first, then this rank's own comparison: a rank started with
  // another number of processes would wait for ranks that do not exist.
  const auto first = read_description(0, deadline);
  std::vector<int64_t> ranks;
  if (rank_ != 0) {
    ranks.push_back(rank_);
  }
  for (int64_t r = 1; r < world_size_; ++r) {
    if (r != rank_) {
      ranks.push_back(r);
    }
  }
  for (const int64_t r : ranks) {
    const auto difference = first_difference(
        first, r == rank_ ? description : read_description(r, deadline));
    if (!difference.empty()) {
      return "rank " + std::to_string(r) +
             " was started with another run than rank 0: " + difference;
    }
  }
  return "";
}

void Collectives::check_agreement(const std::string& description) {
  if (world_size_ == 1) {
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::string disagreement;
  try {
    auto& store = *group_->store;
    store.set("agreement/rank_" + std::to_string(rank_),
              std::vector<uint8_t>(description.begin(), description.end()));
    disagreement = first_disagreement(description, deadline);
    store.set("agreement/read_" + std::to_string(rank_),
              std::vector<uint8_t>{1});
    if (rank_ == 0 && !disagreement.empty()) {
      // The store lives in this process: it stays until every rank has
      // read what it compares, so that each stops with this same error.
      for (int64_t r = 1; r < world_size_; ++r) {
        wait_for_key(
            store, "agreement/read_" + std::to_string(r), deadline, interrupt_);
      }
    }
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false,
                where(),
                "could not compare the ranks' configs (a rank died or never "
                "came): ",
                message_of(e));
  }
  TORCH_CHECK(disagreement.empty(),
              disagreement,
              ". Every rank must be started with the same config, data and "
              "number of processes");
}

void Collectives::broadcast_from_first(const std::vector<at::Tensor>& tensors) {
  if (world_size_ == 1) {
    return;
  }
  for (const auto& t : tensors) {
    Pending pending;
    pending.what = "the broadcast of rank 0's state";
    pending.tensors = {t};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    pending.work = group_->backend->broadcast(pending.tensors, options);
    wait(pending);
  }
}

// ---------------------------------------------------------------------------

struct GradientAverager::Bucket {
  std::vector<size_t> members;   // indices into parameters_
  std::vector<int64_t> offsets;  // of each member in `flat`
  at::Tensor flat;               // the gradients, one after another
  std::vector<bool> arrived;     // this step, per member
  size_t count = 0;              // members arrived this step
  std::unique_ptr<Collectives::Pending> pending;
};

GradientAverager::GradientAverager(Collectives& collectives,
                                   std::vector<at::Tensor> parameters,
                                   int64_t bucket_bytes)
    : collectives_(collectives) {
  for (auto& p : parameters) {
    if (p.requires_grad()) {
      parameters_.push_back(p);
    }
  }
  if (collectives_.world_size() == 1) {
    return;
  }
  // Reverse order: the last layers' gradients are ready first. A bucket
  // holds one dtype and device.
  Bucket current;
  int64_t bytes = 0;
  const auto close = [&] {
    if (current.members.empty()) {
      return;
    }
    const auto& first = parameters_[current.members.front()];
    current.flat = at::zeros({bytes / first.element_size()}, first.options());
    current.arrived.assign(current.members.size(), false);
    buckets_.push_back(std::move(current));
    current = Bucket();
    bytes = 0;
  };
  for (size_t i = parameters_.size(); i-- > 0;) {
    const auto& p = parameters_[i];
    if (!current.members.empty()) {
      const auto& first = parameters_[current.members.front()];
      if (first.scalar_type() != p.scalar_type() ||
          first.device() != p.device() || bytes >= bucket_bytes) {
        close();
      }
    }
    current.offsets.push_back(bytes / p.element_size());
    current.members.push_back(i);
    bytes += p.numel() * p.element_size();
  }
  close();
  for (size_t b = 0; b < buckets_.size(); ++b) {
    for (size_t slot = 0; slot < buckets_[b].members.size(); ++slot) {
      const size_t index = buckets_[b].members[slot];
      const unsigned hook = parameters_[index].register_hook(
          [this, b, slot](const at::Tensor& gradient) {
            on_gradient(b, slot, gradient);
          });
      hooks_.emplace_back(index, hook);
    }
  }
}

GradientAverager::~GradientAverager() {
  for (const auto& [index, hook] : hooks_) {
    parameters_[index].remove_hook(hook);
  }
}

void GradientAverager::on_gradient(size_t b,
                                   size_t slot,
                                   const at::Tensor& gradient) {
  auto& bucket = buckets_[b];
  const auto& p = parameters_[bucket.members[slot]];
  bucket.flat.narrow(0, bucket.offsets[slot], p.numel())
      .copy_(gradient.reshape({-1}));
  if (!bucket.arrived[slot]) {
    bucket.arrived[slot] = true;
    if (++bucket.count == bucket.members.size()) {
      launch(bucket);
    }
  }
}

void GradientAverager::launch(Bucket& bucket) {
  bucket.pending = collectives_.start_sum(bucket.flat);
  bucket.pending->what = "the gradient sum";
}

void GradientAverager::finish() {
  if (collectives_.world_size() == 1) {
    return;
  }
  const double world = static_cast<double>(collectives_.world_size());
  for (auto& bucket : buckets_) {
    if (!bucket.pending) {
      // Some parameter got no gradient on this rank: it counts zero.
      for (size_t slot = 0; slot < bucket.members.size(); ++slot) {
        if (!bucket.arrived[slot]) {
          const auto& p = parameters_[bucket.members[slot]];
          bucket.flat.narrow(0, bucket.offsets[slot], p.numel()).zero_();
        }
      }
      launch(bucket);
    }
  }
  for (auto& bucket : buckets_) {
    collectives_.wait(*bucket.pending);
    bucket.pending.reset();
    bucket.flat.div_(world);
    for (size_t slot = 0; slot < bucket.members.size(); ++slot) {
      auto& p = parameters_[bucket.members[slot]];
      const auto average =
          bucket.flat.narrow(0, bucket.offsets[slot], p.numel())
              .view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(average);
      } else {
        p.mutable_grad() = average.clone();
      }
      bucket.arrived[slot] = false;
    }
    bucket.count = 0;
  }
}

}  // namespace diffstride
