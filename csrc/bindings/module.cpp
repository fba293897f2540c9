// The extension module fusednn._C.
#include "bindings.h"

NB_MODULE(_C, m) {
  m.doc() = "fusednn kernels: C++ CPU and CUDA";
  fusednn::bindings::bind_info(m);
  fusednn::bindings::bind_cross_entropy(m);
  fusednn::bindings::bind_optimizers(m);
  fusednn::bindings::bind_gemm(m);
  fusednn::bindings::bind_recurrent(m);
  fusednn::bindings::bind_pooling(m);
  fusednn::bindings::bind_conv(m);
  fusednn::bindings::bind_dropout(m);
}
