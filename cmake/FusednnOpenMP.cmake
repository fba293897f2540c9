# OpenMP for the CPU kernels; a build without it stays correct, single-threaded.
find_package(OpenMP COMPONENTS CXX)
function(fusednn_link_openmp target)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
    target_compile_definitions(${target} PRIVATE FUSEDNN_OPENMP=1)
  endif()
endfunction()
