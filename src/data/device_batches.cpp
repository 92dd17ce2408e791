#include <diffstride/data/device_batches.h>

#include <ATen/core/Tensor.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>

namespace diffstride {

DeviceBatches::DeviceBatches(const BatchMaker& maker,
                             int64_t epoch,
                             int64_t first_batch,
                             c10::Device device,
                             c10::MemoryFormat format,
                             size_t in_flight)
    : device_(device),
      source_(maker,
              epoch,
              first_batch,
              /*depth=*/3,
              /*pin_memory=*/device.is_cuda()),
      format_(format),
      in_flight_(std::max<size_t>(1, in_flight)) {
  TORCH_CHECK(device_.is_cpu() || device_.is_cuda(),
              "DeviceBatches: expected a CPU or CUDA device, got ",
              device_);
  if (device_.is_cuda()) {
    side_stream_ = c10::impl::VirtualGuardImpl(device_.type())
                       .getStreamFromGlobalPool(device_);
  }
}

Batch DeviceBatches::on_device(const Batch& batch) const {
  // From pinned memory the copies do not block the host; the pinned blocks
  // stay reserved until the copies that read them are done.
  Batch moved;
  moved.images =
      batch.images.to(device_, /*non_blocking=*/true).contiguous(format_);
  moved.targets = batch.targets.to(device_, /*non_blocking=*/true);
  moved.labels = batch.labels.to(device_, /*non_blocking=*/true);
  return moved;
}

// Queues copies until `in_flight_` batches are on their way. An error (of
// the source, or of a copy) waits until the batches before it are taken.
void DeviceBatches::start_uploads() {
  try {
    while (!source_finished_ && uploads_.size() < in_flight_) {
      auto batch = source_.next();
      if (!batch) {
        source_finished_ = true;
        return;
      }
      c10::StreamGuard on_side_stream(*side_stream_);
      Upload upload{on_device(*batch), c10::Event(device_.type())};
      upload.copied.record(*side_stream_);
      uploads_.push_back(std::move(upload));
    }
  } catch (...) {
    error_ = std::current_exception();
    source_finished_ = true;
  }
}

std::optional<Batch> DeviceBatches::next() {
  if (!side_stream_) {
    auto batch = source_.next();
    if (batch) {
      batch->images = batch->images.contiguous(format_);
    }
    return batch;
  }
  start_uploads();
  if (uploads_.empty()) {
    if (error_) {
      std::rethrow_exception(error_);
    }
    return std::nullopt;
  }
  Upload upload = std::move(uploads_.front());
  uploads_.pop_front();
  const auto step_stream =
      c10::impl::VirtualGuardImpl(device_.type()).getStream(device_);
  upload.copied.block(step_stream);
  // The side stream allocated these tensors: when they are freed, their
  // memory waits for the step stream's work queued by then.
  for (const auto* tensor :
       {&upload.batch.images, &upload.batch.targets, &upload.batch.labels}) {
    tensor->record_stream(step_stream);
  }
  start_uploads();
  return std::move(upload.batch);
}

}  // namespace diffstride
