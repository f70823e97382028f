# Using kiln from other projects: the static library, shared-library symbol
# hygiene, `cmake --install` rules, the CMake package (find_package(kiln) ->
# kiln::kiln, kiln::kiln_static) and kiln.pc for pkg-config.
# Included from the top-level CMakeLists.txt once the `kiln` target exists.
#
#   KILN_BUILD_STATIC    also build libkiln.a (kiln::kiln_static); default ON
#   KILN_PYTHON_INSTALL  install only the shared library, into kiln/ under the
#                        install prefix (the Python package's build sets this)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

option(KILN_BUILD_STATIC "Build the static library libkiln.a (kiln::kiln_static) too" ON)
option(KILN_PYTHON_INSTALL "Install only the shared library, into <prefix>/kiln (python/pyproject.toml)" OFF)

# ------------------------------------------------ shared-library hygiene
# The visibility preset hides kiln's own internals, but not everything: GCC
# gives target_clones/ifunc dispatchers default visibility, and symbols from
# static archives (cudart_static's cuda*) would be exported too and clash
# with the application's CUDA runtime. A version script that names exactly
# the functions declared KILN_API in kiln.h makes them the whole ABI.
if(CMAKE_SYSTEM_NAME STREQUAL "Linux" AND CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  file(STRINGS ${PROJECT_SOURCE_DIR}/include/kiln/kiln.h KILN_API_LINES REGEX "^KILN_API ")
  set(KILN_API_SYMBOLS "")
  foreach(line IN LISTS KILN_API_LINES)
    if(line MATCHES "(kiln_[A-Za-z0-9_]+)[ ]*\\(")
      string(APPEND KILN_API_SYMBOLS "    ${CMAKE_MATCH_1};\n")
    endif()
  endforeach()
  set(KILN_VERSION_SCRIPT ${PROJECT_BINARY_DIR}/kiln.map)
  file(WRITE ${KILN_VERSION_SCRIPT}.tmp "{\n  global:\n${KILN_API_SYMBOLS}  local: *;\n};\n")
  configure_file(${KILN_VERSION_SCRIPT}.tmp ${KILN_VERSION_SCRIPT} COPYONLY)
  set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
               ${PROJECT_SOURCE_DIR}/include/kiln/kiln.h)
  target_link_options(kiln PRIVATE "LINKER:--version-script=${KILN_VERSION_SCRIPT}"
                                   "LINKER:--exclude-libs,ALL")
  set_property(TARGET kiln APPEND PROPERTY LINK_DEPENDS ${KILN_VERSION_SCRIPT})
endif()

# The directory the Python package loads libkiln.so from; scikit-build-core
# sets the install prefix to the wheel's root.
if(KILN_PYTHON_INSTALL)
  install(FILES $<TARGET_FILE:kiln> DESTINATION kiln
          RENAME ${CMAKE_SHARED_LIBRARY_PREFIX}kiln${CMAKE_SHARED_LIBRARY_SUFFIX})
  return()
endif()

# ------------------------------------------------------ static library
# The shared library's own object files (position-independent, hidden
# visibility, compiled once with its flags), archived: the two cannot drift
# and the CUDA sources are not compiled twice.
set(KILN_INSTALL_TARGETS kiln)
if(KILN_BUILD_STATIC)
  add_library(kiln_static STATIC $<TARGET_OBJECTS:kiln>)
  add_library(kiln::kiln_static ALIAS kiln_static)
  set_target_properties(kiln_static PROPERTIES LINKER_LANGUAGE C)
  foreach(prop INTERFACE_INCLUDE_DIRECTORIES INTERFACE_COMPILE_DEFINITIONS)
    get_target_property(value kiln ${prop})
    if(NOT value STREQUAL "value-NOTFOUND")
      set_property(TARGET kiln_static PROPERTY ${prop} "${value}")
    endif()
  endforeach()
  # PRIVATE on a static library still exports as $<LINK_ONLY:...>, so a
  # consumer of kiln::kiln_static links OpenMP (and cudart_static) too;
  # kilnConfig.cmake finds them.
  get_target_property(KILN_LINK_LIBRARIES kiln LINK_LIBRARIES)
  if(KILN_LINK_LIBRARIES)
    target_link_libraries(kiln_static PRIVATE ${KILN_LINK_LIBRARIES})
  endif()
  if(KILN_CUDA_SOURCES)
    # The host side of the .cu files is C++ (unwind tables reference the
    # C++ runtime); a C program linking libkiln.a needs libstdc++ too.
    target_link_libraries(kiln_static INTERFACE $<LINK_ONLY:stdc++>)
  endif()
  set_target_properties(kiln_static PROPERTIES OUTPUT_NAME kiln EXPORT_NAME kiln_static)
  list(APPEND KILN_INSTALL_TARGETS kiln_static)
endif()

# --------------------------------------------------------------- install
set(KILN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/kiln CACHE STRING
    "Where kilnConfig.cmake is installed, relative to the prefix")

install(TARGETS ${KILN_INSTALL_TARGETS} EXPORT kilnTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Runtime NAMELINK_COMPONENT Development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT Development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT Runtime
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/kiln/kiln.h
              ${PROJECT_BINARY_DIR}/include/kiln/kiln_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/kiln COMPONENT Development)

install(EXPORT kilnTargets NAMESPACE kiln:: DESTINATION ${KILN_INSTALL_CMAKEDIR}
        COMPONENT Development)
if(KILN_CUDA_SOURCES)
  set(KILN_PACKAGE_HAS_CUDA ON)
else()
  set(KILN_PACKAGE_HAS_CUDA OFF)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/kilnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/kilnConfig.cmake INSTALL_DESTINATION ${KILN_INSTALL_CMAKEDIR})
# SONAME carries the major version, so the package promises the same.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kilnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kilnConfig.cmake ${PROJECT_BINARY_DIR}/kilnConfigVersion.cmake
        DESTINATION ${KILN_INSTALL_CMAKEDIR} COMPONENT Development)

# ------------------------------------------------------------ pkg-config
# `pkg-config --libs kiln` links the shared library; `--static` adds what
# libkiln.a needs (OpenMP, and the CUDA runtime and cuBLAS when built with CUDA).
set(KILN_PC_LIBS_PRIVATE "${OpenMP_C_FLAGS}")
if(KILN_CUDA_SOURCES)
  get_target_property(KILN_CUDART_STATIC CUDA::cudart_static IMPORTED_LOCATION)
  get_filename_component(KILN_CUDART_DIR "${KILN_CUDART_STATIC}" DIRECTORY)
  string(APPEND KILN_PC_LIBS_PRIVATE
         " -L${KILN_CUDART_DIR} -lcudart_static -lcublas -lrt -lpthread -ldl -lstdc++")
endif()
string(STRIP "${KILN_PC_LIBS_PRIVATE}" KILN_PC_LIBS_PRIVATE)
# prefix is found from the .pc file's own place, so the tree stays right
# under `cmake --install --prefix DIR` and when moved; absolute include/lib
# dirs (GNUInstallDirs allows them) are used as given.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KILN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH KILN_PC_UP "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
  string(REGEX REPLACE "/$" "" KILN_PC_UP "${KILN_PC_UP}")
  set(KILN_PC_PREFIX "\${pcfiledir}/${KILN_PC_UP}")
endif()
foreach(kind INCLUDEDIR LIBDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(KILN_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(KILN_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/kiln.pc.in ${PROJECT_BINARY_DIR}/kiln.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kiln.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT Development)
