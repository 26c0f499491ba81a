# Reproducible binaries (issue 11): no source or build directory path inside them
# (assert() messages, debug info), so two clean builds of one commit in different
# directories link the same bytes and packaging/mkimage.py makes the same image.
# Both maps, the build tree's last: GCC uses the last matching option, and the build
# tree usually sits inside the source tree.
add_compile_options("-ffile-prefix-map=${CMAKE_SOURCE_DIR}=." "-ffile-prefix-map=${CMAKE_BINARY_DIR}=build")
