#pragma once

// Batches moved to the training device ahead of the step (docs/training.md,
// "Devices and precision"). Batches are made on a BatchPrefetcher's thread
// (which, for a GPU, also pins them); on a GPU each is copied on a side
// stream up to `in_flight` batches ahead; the stream that runs the step waits
// for that copy's event only, so copies overlap the steps before them. On the
// CPU the batches pass through.

#include <diffstride/data/batches.h>

#include <c10/core/Device.h>
#include <c10/core/Event.h>
#include <c10/core/MemoryFormat.h>
#include <c10/core/Stream.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <optional>

namespace diffstride {

class DeviceBatches {
 public:
  /// Batches [first_batch, batches_per_epoch) of epoch `epoch` of `maker`
  /// on `device` (CPU or CUDA), their images in `format`.
  DeviceBatches(const BatchMaker& maker,
                int64_t epoch,
                int64_t first_batch,
                c10::Device device,
                c10::MemoryFormat format,
                size_t in_flight = 2);

  /// The next batch, ready for work queued on the device's current stream;
  /// nothing at the end of the source. Rethrows the source's error (or a
  /// copy's) once the batches before it are taken.
  std::optional<Batch> next();

 private:
  struct Upload {
    Batch batch;
    c10::Event copied;
  };

  void start_uploads();
  Batch on_device(const Batch& batch) const;

  c10::Device device_;
  BatchPrefetcher source_;
  c10::MemoryFormat format_;
  size_t in_flight_;
  std::optional<c10::Stream> side_stream_;
  std::deque<Upload> uploads_;
  bool source_finished_ = false;
  std::exception_ptr error_;
};

}  // namespace diffstride
