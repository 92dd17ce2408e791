#pragma once

// Tensors the host fills, such as the 2-D layers' small matrices, under the
// tensor modes of PyTorch's tracers (FakeTensor for torch.compile and
// torch.export, functionalization): those modes intercept every op,
// factories included, and a fake tensor has no data to write. The host
// builds such a tensor outside the modes, as a real one, and then lifts it
// into the active mode as a constant, as torch.tensor does; with no mode
// active the lift returns the tensor itself. Internal to the library.

#include <ATen/core/Tensor.h>
#include <ATen/ops/lift_fresh.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace diffstride {
namespace detail {

/// Excludes, while alive, the dispatch keys of tensor modes and tensor
/// subclasses implemented in Python and of functionalization: ops on real
/// tensors then run on their device's kernels.
class OutsideTensorModes {
 public:
  OutsideTensorModes()
      : guard_(c10::DispatchKeySet({c10::DispatchKey::Python,
                                    c10::DispatchKey::PythonTLSSnapshot,
                                    c10::DispatchKey::Functionalize})) {}

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

/// Whether a tensor mode is active on this thread (its keys are included in
/// the thread's dispatch key set): the one check on the layers' per-call
/// host path when none is.
inline bool tensor_mode_active() {
  const auto included = c10::impl::tls_local_dispatch_key_set().included_;
  return included.has(c10::DispatchKey::Python) ||
         included.has(c10::DispatchKey::PythonTLSSnapshot) ||
         included.has(c10::DispatchKey::Functionalize);
}

/// `tensor`, built outside the modes, as a constant of the active mode.
inline at::Tensor lifted(const at::Tensor& tensor) {
  return tensor_mode_active() ? at::lift_fresh(tensor) : tensor;
}

/// The tensor `make()` builds (and fills) on the host, lifted into the
/// active tensor mode as a constant.
template <typename Make>
at::Tensor host_constant(const Make& make) {
  if (!tensor_mode_active()) {
    return make();
  }
  at::Tensor made;
  {
    OutsideTensorModes outside;
    made = make();
  }
  return at::lift_fresh(made);
}

/// Whether `tensor` holds no data the host can read: on the meta device, or
/// a fake tensor (one handled in Python, as FakeTensor is).
inline bool holds_no_values(const at::Tensor& tensor) {
  return tensor.is_meta() || tensor.key_set().has(c10::DispatchKey::Python);
}

}  // namespace detail
}  // namespace diffstride
