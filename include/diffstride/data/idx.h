#pragma once

// IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed (docs/data.md).

#include <diffstride/data/dataset.h>

#include <string>

namespace diffstride {

/// The unsigned-byte array in an IDX file: magic 0x00000800 + number of
/// dimensions (big-endian), the dimension sizes (big-endian int32), then the
/// bytes. Gzip is detected from the content. Errors name the file: missing,
/// bad magic, truncated or longer than its header says, corrupt gzip data.
at::Tensor read_idx(const std::string& path);

/// Images (N x H x W, magic 0x00000803) and labels (N, 0x00000801) as a
/// one-channel dataset; checks the counts agree and every label is below
/// `num_classes`.
Dataset load_idx_dataset(const std::string& name,
                         const std::string& images_path,
                         const std::string& labels_path,
                         int64_t num_classes);

}  // namespace diffstride
