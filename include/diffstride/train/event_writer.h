#pragma once

// TensorBoard event files: scalars written as TFRecords (length, masked
// CRC32C, Event protocol buffer, masked CRC32C), readable by TensorBoard
// without TensorFlow or protobuf here.

#include <cstdint>
#include <string>

namespace diffstride {

/// CRC-32C (Castagnoli) of `size` bytes, and the masked form TFRecords store:
/// ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c(const uint8_t* data, size_t size);
uint32_t masked_crc32c(const uint8_t* data, size_t size);

/// How the names of event files start (TensorBoard finds them by it).
constexpr const char* kEventFilePrefix = "events.out.tfevents.";

class EventWriter {
 public:
  /// Creates `folder` if needed and a new file events.out.tfevents.<time>.
  /// <host>.<pid> in it, starting with the file-version event.
  explicit EventWriter(const std::string& folder);
  /// Writes what is not flushed yet (errors are flush()'s to report).
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  /// Writes the records added since the last flush.
  void flush();

  const std::string& path() const {
    return path_;
  }

 private:
  void write_record(const std::string& event);

  std::string path_;
  int fd_ = -1;          // of the file, created exclusively
  std::string pending_;  // records not written yet
};

}  // namespace diffstride
