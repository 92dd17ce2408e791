#include <diffstride/data/audio_folder.h>

#include "data/class_folders.h"
#include "data/random_draws.h"
#include "data/regular_file.h"

#include <c10/util/Exception.h>
#include <samplerate.h>
#include <sndfile.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace diffstride {

namespace {

// A file's samples, frame after frame (interleaved channels), as float.
struct Sound {
  int64_t channels = 0, rate = 0;
  std::vector<float> samples;
  int64_t frames() const {
    return channels == 0 ? 0 : static_cast<int64_t>(samples.size()) / channels;
  }
};

// More channels than 7.1 surround sound has is taken for a damaged header.
constexpr int kMaxChannels = 8;

// An open file that libsndfile reads through virtual I/O: the descriptor
// stays this code's own, closed once here (libsndfile's sf_open_fd closes
// it on some failures whatever it is told).
struct OpenFile {
  int fd;
  sf_count_t size, offset = 0;
  ~OpenFile() {
    ::close(fd);
  }
};

extern "C" sf_count_t file_length(void* file) {
  return static_cast<OpenFile*>(file)->size;
}

extern "C" sf_count_t file_seek(sf_count_t offset, int whence, void* data) {
  auto* file = static_cast<OpenFile*>(data);
  const sf_count_t base = whence == SEEK_SET   ? 0
                          : whence == SEEK_CUR ? file->offset
                                               : file->size;
  file->offset = std::clamp<sf_count_t>(base + offset, 0, file->size);
  return file->offset;
}

extern "C" sf_count_t file_read(void* out, sf_count_t count, void* data) {
  auto* file = static_cast<OpenFile*>(data);
  ssize_t n;
  do {
    n = ::pread(file->fd, out, static_cast<size_t>(count), file->offset);
  } while (n < 0 && errno == EINTR);
  file->offset += std::max<ssize_t>(n, 0);
  return std::max<ssize_t>(n, 0);
}

extern "C" sf_count_t file_tell(void* data) {
  return static_cast<OpenFile*>(data)->offset;
}

extern "C" sf_count_t file_write(const void*, sf_count_t, void*) {
  return 0;
}

// Frame `frame` (interleaved, `from` channels) as `to` channels: 1 averages
// them, 2 keeps the first two (a mono file's one repeated). Integer formats
// are within [-1, 1]; floating-point ones may hold anything: louder samples
// are clipped first, and a non-finite one makes the file a bad file.
void mix_frame(const std::string& path,
               float* frame,
               int64_t from,
               int64_t to,
               float* out) {
  for (int64_t c = 0; c < from; ++c) {
    if (!std::isfinite(frame[c])) {
      throw std::runtime_error(path +
                               ": holds non-finite samples (NaN or infinity)");
    }
    frame[c] = std::clamp(frame[c], -1.0f, 1.0f);
  }
  if (to == 1) {
    float sum = 0;
    for (int64_t c = 0; c < from; ++c) {
      sum += frame[c];
    }
    out[0] = sum / static_cast<float>(from);
    return;
  }
  for (int64_t c = 0; c < to; ++c) {
    out[c] = frame[std::min(c, from - 1)];
  }
}

// The samples as `channels` channels, a block at a time: memory grows with
// what the file holds in the channels kept, never with what its header
// claims (a 42-byte FLAC can claim 2^27 frames of 8 channels).
std::vector<float> read_frames(const std::string& path,
                               SNDFILE* file,
                               const SF_INFO& info,
                               int64_t channels) {
  constexpr sf_count_t kBlock = 1 << 16;
  std::vector<float> samples;
  std::vector<float> block(static_cast<size_t>(kBlock * info.channels));
  sf_count_t total = 0;
  while (total < info.frames) {
    const sf_count_t read = sf_readf_float(
        file, block.data(), std::min<sf_count_t>(kBlock, info.frames - total));
    if (read <= 0) {
      break;
    }
    const size_t at = samples.size();
    samples.resize(at + static_cast<size_t>(read * channels));
    for (sf_count_t f = 0; f < read; ++f) {
      mix_frame(path,
                block.data() + f * info.channels,
                info.channels,
                channels,
                samples.data() + at + f * channels);
    }
    total += read;
  }
  if (total != info.frames || sf_error(file) != SF_ERR_NO_ERROR) {
    throw std::runtime_error(path + ": truncated or damaged (" +
                             std::to_string(total) + " of " +
                             std::to_string(info.frames) + " frames read; " +
                             sf_strerror(file) + ")");
  }
  return samples;
}

// The file's sound as `channels` channels.
Sound read_sound(const std::string& path,
                 int64_t max_frames,
                 int64_t channels) {
  SF_INFO info{};
  OpenFile source{detail::open_regular_file(path), 0};
  struct stat status {};
  ::fstat(source.fd, &status);
  source.size = status.st_size;
  SF_VIRTUAL_IO io{file_length, file_seek, file_read, file_write, file_tell};
  std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> file(
      sf_open_virtual(&io, SFM_READ, &info, &source), &sf_close);
  if (!file) {
    throw std::runtime_error(path + ": not a sound file libsndfile reads (" +
                             sf_strerror(nullptr) + ")");
  }
  if (info.channels < 1 || info.channels > kMaxChannels ||
      info.samplerate < 1 || info.frames < 0) {
    throw std::runtime_error(path + ": implausible header (" +
                             std::to_string(info.channels) + " channels, " +
                             std::to_string(info.samplerate) + " Hz, " +
                             std::to_string(info.frames) + " frames)");
  }
  if (info.frames > max_frames) {
    throw std::runtime_error(
        path + ": declares " + std::to_string(info.frames) +
        " frames, more than data.max_sound_frames = " +
        std::to_string(max_frames) + " (raise it for longer sound)");
  }
  // libsndfile reads what a truncated file holds and notes, in its log,
  // the sizes the header announced ("data : 28000 (should be 9304)").
  char log[2048] = {0};
  sf_command(file.get(), SFC_GET_LOG_INFO, log, sizeof log);
  const std::string text = log;
  const auto mismatch = text.find("(should be");
  if (mismatch != std::string::npos) {
    const auto begin = text.rfind('\n', mismatch) + 1;
    const auto end = text.find('\n', mismatch);
    throw std::runtime_error(path + ": truncated or damaged (header: " +
                             text.substr(begin, end - begin) + ")");
  }
  Sound sound;
  sound.channels = channels;
  sound.rate = info.samplerate;
  sound.samples = read_frames(path, file.get(), info, channels);
  return sound;
}

Sound resampled(const std::string& path,
                const Sound& sound,
                int64_t rate,
                int64_t max_frames) {
  Sound out;
  out.channels = sound.channels;
  out.rate = rate;
  const double ratio =
      static_cast<double>(rate) / static_cast<double>(sound.rate);
  const double exact = static_cast<double>(sound.frames()) * ratio;
  if (exact >= static_cast<double>(max_frames)) {
    throw std::runtime_error(
        path + ": resampled from " + std::to_string(sound.rate) + " to " +
        std::to_string(rate) + " Hz it would exceed data.max_sound_frames = " +
        std::to_string(max_frames));
  }
  const int64_t frames = static_cast<int64_t>(exact) + 1;
  out.samples.resize(static_cast<size_t>(frames * sound.channels));
  SRC_DATA data{};
  data.data_in = sound.samples.data();
  data.input_frames = static_cast<long>(sound.frames());
  data.data_out = out.samples.data();
  data.output_frames = static_cast<long>(frames);
  data.src_ratio = ratio;
  const int error = src_simple(
      &data, SRC_SINC_MEDIUM_QUALITY, static_cast<int>(sound.channels));
  if (error != 0) {
    throw std::runtime_error(path + ": resampling failed (" +
                             src_strerror(error) + ")");
  }
  out.samples.resize(
      static_cast<size_t>(data.output_frames_gen * sound.channels));
  return out;
}

class AudioFolderReader : public detail::FolderReader {
 public:
  AudioFolderReader(const detail::ClassFolders& index,
                    FolderOptions options,
                    bool random_crops)
      : FolderReader(index, std::move(options)), random_crops_(random_crops) {}

  std::vector<int64_t> example_shape() const override {
    return {options_.channels(), 1, options_.clip_samples()};
  }

  double full_scale() const override {
    return 1.0;
  }

 protected:
  void decode(const std::string& path,
              uint64_t draw,
              float* out) const override {
    auto sound =
        read_sound(path, options_.max_sound_frames(), options_.channels());
    if (sound.rate != options_.sample_rate()) {
      if (!options_.resample()) {
        throw std::runtime_error(path + ": " + std::to_string(sound.rate) +
                                 " Hz, expected " +
                                 std::to_string(options_.sample_rate()) +
                                 " Hz (data.resample = true resamples it)");
      }
      sound = resampled(
          path, sound, options_.sample_rate(), options_.max_sound_frames());
    }
    // The clip: training, at a random offset; evaluation, the centre;
    // silence after a shorter sound.
    const int64_t length = options_.clip_samples();
    const int64_t frames = sound.frames();
    int64_t offset = 0;
    if (frames > length) {
      detail::SplitMix64 rng{draw};
      offset = random_crops_ ? static_cast<int64_t>(rng.below(
                                   static_cast<uint64_t>(frames - length + 1)))
                             : (frames - length) / 2;
    }
    // Interleaved frames to channels-first.
    const int64_t C = sound.channels;
    std::fill(out, out + C * length, 0.0f);
    for (int64_t t = 0; t < std::min(length, frames - offset); ++t) {
      const float* frame = sound.samples.data() + (offset + t) * C;
      for (int64_t c = 0; c < C; ++c) {
        out[c * length + t] = frame[c];
      }
    }
  }

 private:
  bool random_crops_;
};

}  // namespace

Dataset load_audio_folder(const std::string& dir,
                          const std::string& split,
                          FolderOptions options) {
  if (options.channels() == 0) {
    options.channels(1);
  }
  TORCH_CHECK(options.channels() == 1 || options.channels() == 2,
              "audio folders: expected 1 (mono) or 2 channels, got ",
              options.channels());
  TORCH_CHECK(options.sample_rate() >= 1 && options.clip_samples() >= 1,
              "audio folders: expected a positive data.sample_rate and "
              "data.clip_samples, got ",
              options.sample_rate(),
              " and ",
              options.clip_samples());
  const auto index = detail::index_class_folders(dir,
                                                 split,
                                                 {".wav", ".flac", ".ogg"},
                                                 "sound files",
                                                 options.skip_bad_files());
  return detail::folder_dataset(
      "audio_folder",
      index,
      std::make_shared<AudioFolderReader>(
          index,
          options,
          split == "train" && options.train_crop() != "center"));
}

}  // namespace diffstride
