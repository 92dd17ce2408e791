#pragma once

// Data-parallel training on PyTorch's c10d (docs/training.md, "Several
// processes"): the launcher's environment, a process group (Gloo for CPU
// tensors, NCCL for CUDA ones) and the gradient averaging of a step. With one
// process every operation here is the identity and no process group exists.
// The c10d headers stay in the one file that implements this.

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace diffstride {

/// Where this process stands among the ranks, as torchrun (or a scheduler,
/// or a person) describes it in RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Without WORLD_SIZE: one
/// process.
struct LauncherEnvironment {
  int64_t rank = 0, world_size = 1;
  int64_t local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  /// torchrun hosts the rendezvous store itself: every rank is its client.
  bool store_hosted_by_launcher = false;
  /// torchrun's restart count: keys of a restarted attempt start afresh.
  int64_t attempt = 0;
};

/// The environment of this process; an error naming the variable when one is
/// set but not valid (RANK outside [0, WORLD_SIZE), a port outside 1-65535).
LauncherEnvironment launcher_environment();

/// The c10d backends this build has: "gloo" (CPU tensors), "nccl" (CUDA).
std::vector<std::string> built_backends();

/// The collective operations of one process group. Tensors are reduced in
/// place on every rank; a failure (a peer that died, or did not answer within
/// the timeout) is an error naming this rank and the operation.
class Collectives {
 public:
  /// One process.
  Collectives();
  /// Joins the group `environment` describes, for tensors on `device`: Gloo
  /// for the CPU, NCCL for CUDA (Gloo when this build has no NCCL). Every
  /// operation, and joining itself, fails after `timeout` without progress;
  /// while waiting for the other ranks to join, `interrupt` (Ctrl-C) ends
  /// the wait with an error.
  ///
  /// Before the group forms, every rank publishes `description` of its run
  /// (lines "key = value") in the rendezvous store and compares them all:
  /// where one differs from rank 0's, every rank stops with the same error
  /// naming the rank and the first differing key. Ranks that disagree on
  /// sizes or on their number would otherwise fail in Gloo, or send
  /// collectives of different sizes, which Gloo answers with an abort.
  Collectives(const LauncherEnvironment& environment,
              const c10::Device& device,
              std::chrono::milliseconds timeout,
              const std::string& description = "",
              const std::atomic<bool>* interrupt = nullptr);
  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  int64_t rank() const {
    return rank_;
  }
  int64_t world_size() const {
    return world_size_;
  }
  /// "gloo", "nccl", or "none" for one process.
  std::string backend() const;

  /// Every rank's tensors take rank 0's values.
  void broadcast_from_first(const std::vector<at::Tensor>& tensors);
  /// Sums across ranks.
  void sum(const at::Tensor& tensor);
  /// Averages across ranks (floating-point tensors).
  void average(const std::vector<at::Tensor>& tensors);

  /// Launches a sum without waiting; `wait` returns when it is done.
  class Pending;
  std::unique_ptr<Pending> start_sum(const at::Tensor& tensor);
  void wait(Pending& pending);

 private:
  struct Group;
  using TimePoint = std::chrono::steady_clock::time_point;
  /// "rank R of W: ", how errors start.
  std::string where() const;
  /// What rank `rank` published for check_agreement, waited for until
  /// `deadline`.
  std::string read_description(int64_t rank, TimePoint deadline) const;
  void check_agreement(const std::string& description);
  /// The first rank whose description differs from rank 0's, and how; empty
  /// when all agree.
  std::string first_disagreement(const std::string& description,
                                 TimePoint deadline) const;
  int64_t rank_ = 0, world_size_ = 1;
  std::chrono::milliseconds timeout_{0};
  const std::atomic<bool>* interrupt_ = nullptr;
  std::unique_ptr<Group> group_;
};

/// Averages the gradients of `parameters` across ranks, the way PyTorch's
/// DistributedDataParallel does: parameters go into buckets of about
/// `bucket_bytes` in reverse order (the order in which backward produces
/// their gradients); a hook on each parameter copies its gradient into its
/// bucket, and a full bucket is summed across ranks while backward goes on.
/// After backward, finish() waits for every bucket and writes the averages
/// into the parameters' .grad. With one process it registers nothing.
class GradientAverager {
 public:
  GradientAverager(Collectives& collectives,
                   std::vector<at::Tensor> parameters,
                   int64_t bucket_bytes = 25 << 20);
  ~GradientAverager();
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  /// Call after backward: every parameter's .grad holds the average over
  /// ranks (a parameter that got no gradient on a rank counts zero there).
  void finish();

 private:
  struct Bucket;
  void on_gradient(size_t bucket, size_t slot, const at::Tensor& gradient);
  void launch(Bucket& bucket);

  Collectives& collectives_;
  std::vector<at::Tensor> parameters_;
  std::vector<Bucket> buckets_;
  std::vector<std::pair<size_t, unsigned>> hooks_;  // parameter, hook index
};

}  // namespace diffstride
