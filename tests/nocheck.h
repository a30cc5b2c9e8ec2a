/*
 * Forced into every Check test's compilation when configure did not find
 * Check: the library and the tools build without it, `make check` stops
 * here with what to install.
 */
#error "make check needs the Check unit test library: apt-get install check, then run configure again"
