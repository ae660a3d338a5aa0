# cython: language_level=3
# CPU feature probe, compiled for the baseline instruction set only: it must import on every
# CPU, so that fastnll can choose which kernel module to import.
cdef extern from *:
    """
    #if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__) \
        && __GNUC__ >= 12
    /* gcc 12 checks exactly the feature sets that -march=x86-64-v3/-v4 may use */
    static int fnl_cpu_is_x86_64(void) { return 1; }
    static int fnl_has_v3(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("x86-64-v3");
    }
    static int fnl_has_v4(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("x86-64-v4");
    }
    #elif (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    static int fnl_cpu_is_x86_64(void) { return 1; }
    static int fnl_has_v3(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("avx");
    }
    static int fnl_has_v4(void) {
        __builtin_cpu_init();
        return fnl_has_v3() && __builtin_cpu_supports("avx512f")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd");
    }
    #elif defined(__x86_64__) || defined(_M_X64)
    /* other compilers (MSVC): the baseline level only */
    static int fnl_cpu_is_x86_64(void) { return 1; }
    static int fnl_has_v3(void) { return 0; }
    static int fnl_has_v4(void) { return 0; }
    #else
    static int fnl_cpu_is_x86_64(void) { return 0; }
    static int fnl_has_v3(void) { return 0; }
    static int fnl_has_v4(void) { return 0; }
    #endif
    /* the CPU's vendor: 1 Intel, 2 AMD, 0 another or unknown */
    #if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
    static int fnl_cpu_vendor(void) {
        __builtin_cpu_init();
        return __builtin_cpu_is("intel") ? 1 : __builtin_cpu_is("amd") ? 2 : 0;
    }
    #else
    static int fnl_cpu_vendor(void) { return 0; }
    #endif
    """
    int fnl_cpu_is_x86_64()
    int fnl_cpu_vendor()
    int fnl_has_v3()
    int fnl_has_v4()


def supported_levels():
    """Kernel levels this CPU can run, best last."""
    if not fnl_cpu_is_x86_64():
        return ["generic"]
    levels = ["x86-64"]
    if fnl_has_v3():
        levels.append("x86-64-v3")
    if fnl_has_v4():
        levels.append("x86-64-v4")
    return levels


def vendor():
    """The CPU's vendor as far as the build can tell: "intel", "amd" or "other"."""
    return {1: "intel", 2: "amd"}.get(fnl_cpu_vendor(), "other")
