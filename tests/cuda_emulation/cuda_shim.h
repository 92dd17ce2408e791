#pragma once

// Just enough of CUDA's kernel language to run device code on the CPU: one
// host thread per CUDA thread of a block, __syncthreads() a barrier among
// them, blocks one after another, and shared memory one host array.

#include <pthread.h>

#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__
#define __launch_bounds__(...)
#define __align__(n)

struct EmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local EmulatedDim3 threadIdx;
inline thread_local EmulatedDim3 blockIdx;
inline EmulatedDim3 blockDim;
inline EmulatedDim3 gridDim;
inline pthread_barrier_t emulated_block_barrier;

inline void __syncthreads() {
  pthread_barrier_wait(&emulated_block_barrier);
}

/// kernel<<<grid, block>>>(args...), each block's threads as host threads.
template <typename Kernel, typename... Args>
void emulated_launch(Kernel kernel,
                     unsigned grid,
                     unsigned block,
                     Args... args) {
  gridDim.x = grid;
  blockDim.x = block;
  for (unsigned b = 0; b < grid; ++b) {
    pthread_barrier_init(&emulated_block_barrier, nullptr, block);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t) {
      threads.emplace_back([=] {
        threadIdx.x = t;
        blockIdx.x = b;
        kernel(args...);
      });
    }
    for (auto& thread : threads) {
      thread.join();
    }
    pthread_barrier_destroy(&emulated_block_barrier);
  }
}
