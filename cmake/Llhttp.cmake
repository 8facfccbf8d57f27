# llhttp is not packaged as a library in Debian 12, but node-llhttp ships its C sources.
# Build them here into a static library; they are never copied into this repository.
set(LLHTTP_SOURCE_DIR /usr/share/llhttp CACHE PATH "Directory holding llhttp.c, api.c, http.c")
set(LLHTTP_INCLUDE_DIR /usr/share/include/llhttp CACHE PATH "Directory holding llhttp.h")

foreach(file llhttp.c api.c http.c)
  if(NOT EXISTS ${LLHTTP_SOURCE_DIR}/${file})
    message(FATAL_ERROR "llhttp source ${LLHTTP_SOURCE_DIR}/${file} not found: install Debian's "
                        "node-llhttp (packaging/install-deps.sh) or set LLHTTP_SOURCE_DIR")
  endif()
endforeach()

add_library(llhttp STATIC ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c
                          ${LLHTTP_SOURCE_DIR}/http.c)
target_include_directories(llhttp SYSTEM PUBLIC $<BUILD_INTERFACE:${LLHTTP_INCLUDE_DIR}>)
# The generated parser has a strict variant (llhttp.c is compiled twice over, #if'd on this):
# it insists on CRLF after each chunk, among other things the default lets through.
target_compile_definitions(llhttp PUBLIC LLHTTP_STRICT_MODE=1)
# Installed beside libsockdispatch.a (which needs it) under a name no system llhttp uses.
set_target_properties(llhttp PROPERTIES C_STANDARD 99 POSITION_INDEPENDENT_CODE ON
                                        OUTPUT_NAME sockdispatch-llhttp)
target_compile_options(llhttp PRIVATE -w)
