# sockdispatch_add_bpf_skeleton(NAME SOURCE)
#
# Compiles SOURCE (a *.bpf.c file) with clang -target bpf against the UAPI headers, then
# generates NAME.skel.h with `bpftool gen skeleton ... name NAME_bpf` (so the skeleton's
# struct is `NAME_bpf` whatever the build path). Header dependencies come from clang's
# depfile. Exposes an INTERFACE target NAME_skeleton that puts the header on the include
# path. Generated files live in the build tree only.
find_program(SOCKDISPATCH_BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(SOCKDISPATCH_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

function(sockdispatch_add_bpf_skeleton name source)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf)
  set(object ${out_dir}/${name}.bpf.o)
  set(skeleton ${out_dir}/${name}.skel.h)
  file(MAKE_DIRECTORY ${out_dir})

  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
    set(target_arch x86)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(target_arch arm64)
  else()
    set(target_arch ${CMAKE_SYSTEM_PROCESSOR})
  endif()

  set(include_flags -I${PROJECT_SOURCE_DIR}/bpf/include)
  if(CMAKE_LIBRARY_ARCHITECTURE)
    list(APPEND include_flags -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
  endif()

  set(werror_flag)
  if(SOCKDISPATCH_WERROR)
    set(werror_flag -Werror)
  endif()

  add_custom_command(
    OUTPUT ${object}
    COMMAND ${SOCKDISPATCH_BPF_CLANG} -g -O2 -target bpf -D__TARGET_ARCH_${target_arch}
            -Wall -Wextra ${werror_flag} ${include_flags}
            -MD -MF ${object}.d -c ${source} -o ${object}
    DEPFILE ${object}.d
    DEPENDS ${source}
    COMMENT "Compiling BPF program ${name}"
    VERBATIM)

  add_custom_command(
    OUTPUT ${skeleton}
    COMMAND sh -c "${SOCKDISPATCH_BPFTOOL} gen skeleton ${object} name ${name}_bpf > ${skeleton}.tmp && mv ${skeleton}.tmp ${skeleton}"
    DEPENDS ${object}
    COMMENT "Generating BPF skeleton ${name}.skel.h"
    VERBATIM)

  add_custom_target(${name}_skeleton_files DEPENDS ${skeleton})
  add_library(${name}_skeleton INTERFACE)
  target_include_directories(${name}_skeleton SYSTEM INTERFACE ${out_dir})
  add_dependencies(${name}_skeleton ${name}_skeleton_files)
endfunction()
