# Extra instruction sets for the CPU kernels, chosen at run time (csrc/include/fusednn/cpu_isa.h).
#
# fusednn_add_isa_variants(target SOURCES...) compiles SOURCES (already part of `target`, where
# they are the baseline: SSE2 on x86-64) again for AVX2 + FMA and for AVX-512 F/VL/BW/DQ, with
# FUSEDNN_ISA naming the set, and links them into `target`. Only on x86-64 ELF targets with a GNU
# compatible `ld` and `objcopy`, and not with FUSEDNN_NATIVE (-march=native is one path).
#
# Code that several compiles share (inline functions, templates, std::) is emitted in each
# object as a weak symbol in a COMDAT group, and the final link keeps one copy of each, maybe
# one compiled for AVX-512, and calls it from every path. So each set's objects are first linked
# into one relocatable object without COMDAT groups (ld -r --force-group-allocation), and then
# every symbol except those of the set's own namespace, fusednn::cpu::<set>, is made local
# (objcopy --keep-global-symbol): the final link can resolve nothing outside the set to them.

set(FUSEDNN_ISA_FLAGS_avx2 -mavx2 -mfma)
set(FUSEDNN_ISA_FLAGS_avx512 -mavx2 -mfma -mavx512f -mavx512vl -mavx512bw -mavx512dq)

function(fusednn_add_isa_variants target)
  if(FUSEDNN_NATIVE OR NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$"
     OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang" OR APPLE OR WIN32)
    return()
  endif()
  if(NOT CMAKE_LINKER OR NOT CMAKE_OBJCOPY)
    message(WARNING "fusednn: no ld/objcopy found; building the baseline (SSE2) CPU path only")
    return()
  endif()
  target_compile_definitions(${target} PRIVATE FUSEDNN_ISA_VARIANTS=1)
  foreach(isa avx2 avx512)
    set(objects fusednn_isa_${isa})
    add_library(${objects} OBJECT ${ARGN})
    # Hidden like the extension's own code (nanobind's default): nothing is exported, and the
    # baseline's calls into the set are direct, not through the PLT.
    set_target_properties(${objects} PROPERTIES POSITION_INDEPENDENT_CODE ON
      CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
    fusednn_cpu_settings(${objects})
    target_compile_definitions(${objects} PRIVATE FUSEDNN_ISA=${isa})
    # GCC emits inline variables and the static locals of inline functions as STB_GNU_UNIQUE
    # symbols, which objcopy leaves global; without their COMDAT groups the sets' copies
    # would then clash (ExpTraits' tables in the -O2 sanitizer build did). Plain weak
    # symbols are localized like the rest.
    target_compile_options(${objects} PRIVATE ${FUSEDNN_ISA_FLAGS_${isa}}
      $<$<CXX_COMPILER_ID:GNU>:-fno-gnu-unique>)

    string(LENGTH "${isa}" isa_length)
    set(merged "${CMAKE_CURRENT_BINARY_DIR}/fusednn_isa_${isa}.o")
    add_custom_command(
      OUTPUT "${merged}"
      COMMAND "${CMAKE_LINKER}" -r --force-group-allocation -o "${merged}"
              "$<TARGET_OBJECTS:${objects}>"
      COMMAND "${CMAKE_OBJCOPY}" --wildcard
              "--keep-global-symbol=_ZN7fusednn3cpu${isa_length}${isa}*" "${merged}"
      DEPENDS ${objects} "$<TARGET_OBJECTS:${objects}>"
      COMMENT "Linking the ${isa} CPU kernels into one object with local symbols"
      COMMAND_EXPAND_LISTS VERBATIM)
    set_source_files_properties("${merged}" PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
    target_sources(${target} PRIVATE "${merged}")
  endforeach()
endfunction()
