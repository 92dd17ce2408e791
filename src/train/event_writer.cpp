#include <diffstride/train/event_writer.h>

#include "train/checked_file.h"

#include <c10/util/Exception.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

namespace diffstride {

namespace {

std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
    }
    table[i] = c;
  }
  return table;
}

// Protocol buffer encoding, just what Event and Summary need.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

template <typename T>
void put_fixed(std::string& out, T v) {  // little-endian, as x86-64 stores it
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_bytes_field(std::string& out, int field, const std::string& bytes) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | 2);
  put_varint(out, bytes.size());
  out += bytes;
}

double wall_time() {
  return std::chrono::duration<double>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Event { double wall_time = 1; int64 step = 2; <payload> }.
std::string event(int64_t step, const std::string& payload) {
  std::string out;
  put_varint(out, 1 << 3 | 1);
  put_fixed(out, wall_time());
  put_varint(out, 2 << 3 | 0);
  put_varint(out, static_cast<uint64_t>(step));
  return out + payload;
}

}  // namespace

uint32_t crc32c(const uint8_t* data, size_t size) {
  static const auto table = crc32c_table();
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  }
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const uint8_t* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& folder) {
  std::filesystem::create_directories(folder);
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const auto base =
      (std::filesystem::path(folder) /
       (kEventFilePrefix + std::to_string(static_cast<int64_t>(wall_time())) +
        "." + host + "." + std::to_string(getpid())))
          .string();
  // Two writers of one process in the same second (a run and its resume in
  // one program) would share the name: never truncate or write through
  // anything already there (created exclusively, not through a link).
  path_ = base;
  for (int n = 1; (fd_ = detail::create_new_file(path_)) < 0; ++n) {
    path_ = base + "." + std::to_string(n);
  }
  std::string version;
  put_bytes_field(version, 3, "brain.Event:2");  // file_version = 3
  write_record(event(0, version));
  flush();
}

void EventWriter::add_scalar(const std::string& tag,
                             double value,
                             int64_t step) {
  // Summary.Value { string tag = 1; float simple_value = 2; }
  std::string value_message;
  put_bytes_field(value_message, 1, tag);
  put_varint(value_message, 2 << 3 | 5);
  put_fixed(value_message, static_cast<float>(value));
  // Summary { repeated Value value = 1; }, Event.summary = 5.
  std::string summary;
  put_bytes_field(summary, 1, value_message);
  std::string payload;
  put_bytes_field(payload, 5, summary);
  write_record(event(step, payload));
}

void EventWriter::write_record(const std::string& data) {
  std::string header;
  put_fixed(header, static_cast<uint64_t>(data.size()));
  const auto* h = reinterpret_cast<const uint8_t*>(header.data());
  const auto* d = reinterpret_cast<const uint8_t*>(data.data());
  std::string record = header;
  put_fixed(record, masked_crc32c(h, header.size()));
  record += data;
  put_fixed(record, masked_crc32c(d, data.size()));
  pending_ += record;
}

void EventWriter::flush() {
  TORCH_CHECK(detail::write_fully(fd_, pending_),
              path_,
              ": cannot write (",
              std::strerror(errno),
              "); events up to the last flush are intact");
  pending_.clear();
}

EventWriter::~EventWriter() {
  detail::write_fully(fd_, pending_);
  ::close(fd_);
}

}  // namespace diffstride
