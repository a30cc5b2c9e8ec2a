# kg_rm_core.m4 - keep configure quiet about the core/ source folder.
#
# Autoconf's tests clean up after themselves with `rm -f core conftest...`
# (for the core dump a crashing test program may leave), in the build
# directory.  Configured in the source tree, `core` is keygate's core/
# folder: every test printed "rm: cannot remove 'core': Is a directory"
# (about 30 times), and in the exit trap, whose clean-up is a chain of
# `rm ... &&`, the failure also skipped the removal of conftest files.
#
# KG_RM_KEEPS_CORE_DIR defines rm as a shell function, for configure
# only (config.status and the Makefiles are other processes), that
# leaves out an operand `core` when core is a directory and passes
# everything else to the real rm: a core dump is still removed.  It
# works whatever autoconf macro wrote the rm, in every autoconf version;
# use it right after AC_INIT, before the first test.
AC_DEFUN([KG_RM_KEEPS_CORE_DIR], [
rm ()
{
  kg_rm_n=$[#]
  while test $kg_rm_n -gt 0; do
    kg_rm_a=$[1]
    shift
    kg_rm_n=`expr $kg_rm_n - 1`
    if test "x$kg_rm_a" = xcore && test -d core; then :; else
      set x "$[@]" "$kg_rm_a"
      shift
    fi
  done
  command rm "$[@]"
}
])
