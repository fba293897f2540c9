// The recurrent ops' cache layout and workspace sizes, shared by the CPU and
// the CUDA entry points (contract in fusednn/recurrent.h). Apart from
// recurrent.cpp, which is compiled once per instruction set: these run once
// per call and need one copy only.
#include <cstdint>

#include "fusednn/recurrent.h"

namespace fusednn {

std::int64_t gate_count(RecurrentCell cell) {
  switch (cell) {
    case RecurrentCell::kLstm:
      return 4;
    case RecurrentCell::kGru:
      return 3;
    default:
      return 1;
  }
}

RecurrentCacheLayout cache_layout(const RecurrentSpec& spec, const RecurrentShape& shape,
                                  bool training, bool recurrent_masked) {
  const std::int64_t sequence = shape.N * shape.T * shape.U;  // one (N, T, U) array
  RecurrentCacheLayout layout;
  std::int64_t end = gate_count(spec.cell) * sequence;  // gates first
  const auto add = [&](std::int64_t& offset) {
    offset = end;
    end += sequence;
  };
  if (training) {
    add(layout.h_in);
    if (spec.cell == RecurrentCell::kLstm) add(layout.cell);
    if (spec.cell == RecurrentCell::kGru) {
      add(layout.recurrent_h);
      if (recurrent_masked) add(layout.h_prev);
    }
  }
  layout.elements = end;
  return layout;
}

std::int64_t backward_workspace_elements(const RecurrentSpec& spec, const RecurrentShape& shape) {
  // dgates, and for the GRU with reset_after dgates_recurrent.
  const bool two = spec.cell == RecurrentCell::kGru && spec.reset_after;
  return (two ? 2 : 1) * gate_count(spec.cell) * shape.N * shape.T * shape.U;
}

}  // namespace fusednn
