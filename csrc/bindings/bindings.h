// One bind_<family>(m) per file in csrc/bindings/.
#pragma once

#include <nanobind/nanobind.h>

namespace fusednn::bindings {

void bind_info(nanobind::module_& m);
void bind_cross_entropy(nanobind::module_& m);
void bind_optimizers(nanobind::module_& m);
void bind_gemm(nanobind::module_& m);
void bind_recurrent(nanobind::module_& m);
void bind_pooling(nanobind::module_& m);
void bind_conv(nanobind::module_& m);

}  // namespace fusednn::bindings
