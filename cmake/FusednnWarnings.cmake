# Warnings for the host compiler; nvcc passes them on through -Xcompiler.
function(fusednn_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
endfunction()
