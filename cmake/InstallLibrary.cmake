# Installs the library for C++ users: the static archive (and the llhttp archive it needs),
# the public headers, a CMake package (find_package(sockdispatch) gives
# sockdispatch::sockdispatch) and a pkg-config file. Both are relocatable: they find the
# prefix from their own location, so `cmake --install build --prefix DIR` works anywhere.
# All of it is the `dev` component: `cmake --install build --component dev --prefix DIR`
# installs the library alone (not the CLI, nor the systemd unit, whose directory is absolute).
include(CMakePackageConfigHelpers)

set(SOCKDISPATCH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/sockdispatch)

install(TARGETS libsockdispatch llhttp EXPORT sockdispatchTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES include/sockdispatch/server.h include/sockdispatch/exchange.h
              include/sockdispatch/request.h include/sockdispatch/response.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sockdispatch COMPONENT dev)
install(EXPORT sockdispatchTargets NAMESPACE sockdispatch:: DESTINATION ${SOCKDISPATCH_CMAKE_DIR}
        COMPONENT dev)

configure_package_config_file(cmake/sockdispatchConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sockdispatchConfig.cmake INSTALL_DESTINATION ${SOCKDISPATCH_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sockdispatchConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sockdispatchConfig.cmake
              ${PROJECT_BINARY_DIR}/sockdispatchConfigVersion.cmake
        DESTINATION ${SOCKDISPATCH_CMAKE_DIR} COMPONENT dev)

file(RELATIVE_PATH SOCKDISPATCH_PC_TO_PREFIX
     /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file(cmake/sockdispatch.pc.in ${PROJECT_BINARY_DIR}/sockdispatch.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/sockdispatch.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
install(FILES docs/library.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT dev)
