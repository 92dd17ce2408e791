#pragma once

// CIFAR-10 and CIFAR-100, binary versions (docs/data.md).

#include <diffstride/data/dataset.h>

#include <string>

namespace diffstride {

/// CIFAR-10 from `dir` (the folder holding data_batch_1.bin ..
/// data_batch_5.bin and test_batch.bin, or its parent holding
/// cifar-10-batches-bin/). Each file must hold exactly `records_per_file`
/// records (10,000 in the real dataset) of 1 label byte + 3072 image bytes.
Dataset load_cifar10(const std::string& dir,
                     bool train,
                     int64_t records_per_file = 10000);

/// CIFAR-100 from `dir` (train.bin and test.bin, or cifar-100-binary/ in
/// it): records of coarse label, fine label, 3072 image bytes; the fine
/// label is the class. `train_records` / `test_records`: 50,000 / 10,000 in
/// the real dataset.
Dataset load_cifar100(const std::string& dir,
                      bool train,
                      int64_t train_records = 50000,
                      int64_t test_records = 10000);

}  // namespace diffstride
