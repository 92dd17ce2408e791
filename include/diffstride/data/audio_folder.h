#pragma once

// Audio folders in the layout of Speech Commands' label folders, split as
// image folders are: DIR/train/LABEL/*.wav and DIR/val (or test)/LABEL/*.wav.
// Each example is a clip of FolderOptions::clip_samples samples at
// sample_rate, shaped channels x 1 x samples, decoded when a batch needs it
// (docs/data.md, "Audio folders").

#include <diffstride/data/dataset.h>

#include <string>

namespace diffstride {

/// Split `split` ("train"; "test" reads val/ or test/) of the audio folder
/// `dir`: .wav, .flac and .ogg files read by libsndfile, resampled by
/// libsamplerate (or rejected, with resample false) to the sample rate.
Dataset load_audio_folder(const std::string& dir,
                          const std::string& split,
                          FolderOptions options);

}  // namespace diffstride
