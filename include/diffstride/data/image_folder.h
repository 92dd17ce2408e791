#pragma once

// Image folders in the layout of torchvision's ImageFolder: DIR/train and
// DIR/val (or DIR/test), one subfolder per class, JPEG and PNG files. The
// examples are decoded when a batch needs them, so memory holds the batches
// being made, not the dataset (docs/data.md, "Image folders").

#include <diffstride/data/dataset.h>

#include <string>

namespace diffstride {

/// Split `split` ("train"; "test" reads val/ or test/) of the image folder
/// `dir`. The classes are train/'s subfolders, sorted by name; the test
/// split's subfolders must be among them. Files other than .jpg, .jpeg and
/// .png (any case) are not images: an error naming the first, or skipped
/// and counted with skip_bad_files.
Dataset load_image_folder(const std::string& dir,
                          const std::string& split,
                          FolderOptions options);

}  // namespace diffstride
