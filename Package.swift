// swift-tools-version:6.0
// libattention: Keras's attention layers in Swift, exported as a C library (libattention.so).
import PackageDescription

/// The CPU the kernels are compiled for. The runtime-dispatched library (`make lib`) builds
/// the package once per kernel variant (ATTENTION_VARIANT = avx512, avx2 or baseline), each a
/// whole library `libattention-<variant>.so` that Sources/CPUDispatch loads on a CPU that has
/// it. Otherwise `make TARGET_CPU=haswell` (or any LLVM CPU name) sets the CPU of a library
/// for one class of machine; the default, native, is the machine that builds.
let variant = Context.environment["ATTENTION_VARIANT"]
let variantCPUs = ["avx512": "skylake-avx512", "avx2": "haswell", "baseline": "x86-64"]
let targetCPU = variant.flatMap { variantCPUs[$0] } ?? Context.environment["ATTENTION_TARGET_CPU"] ?? "native"
/// What `att_cpu_kernels()` answers: the variant whose CPU this is, else "native".
let kernelsName = variantCPUs.first { $0.value == targetCPU }?.key ?? "native"
/// CPUs without FMA: the kernels then multiply and add instead of calling fma per lane.
let withoutFMA: Set = ["x86-64", "x86-64-v2", "core2", "penryn", "nehalem", "westmere", "sandybridge", "ivybridge",
                       "k8", "btver1", "btver2", "silvermont", "goldmont"]
/// CPUs with 512-bit registers (AVX-512). The others with FMA (AVX2 class) get 256-bit
/// kernel vectors and a 6-row register tile (ATTENTION_NARROW_VECTORS): a 512-bit SIMD type
/// is two registers there and the 8-row tile spilled. For `native`, the Makefile says whether
/// this CPU has avx512f (ATTENTION_NATIVE_AVX512, 1 when unset).
let avx512CPUs: Set = ["skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
                       "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids",
                       "graniterapids", "graniterapids-d", "znver4", "znver5", "x86-64-v4", "knl", "knm"]
let narrowVectors = targetCPU == "native" ? Context.environment["ATTENTION_NATIVE_AVX512"] == "0"
    : !avx512CPUs.contains(targetCPU) && !withoutFMA.contains(targetCPU)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU]), .define("ATTENTION_KERNELS_\(kernelsName.uppercased())")]
    + (withoutFMA.contains(targetCPU) ? [.define("ATTENTION_NO_FMA")] : [])
    + (narrowVectors ? [.define("ATTENTION_NARROW_VECTORS")] : [])
/// Kernels drop bounds and overflow checks (-Ounchecked) in release builds, except in the
/// checked build the tests also run (`ATTENTION_CHECKED=1`: an index error traps there).
let kernelOptimisation: [SwiftSetting] = Context.environment["ATTENTION_CHECKED"] == "1"
    ? [] : [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
let exportsMap = Context.packageDirectory + "/Sources/LibAttention/exports.map"
/// The library's SONAME: its ABI version, ATT_VERSION_MAJOR of include/attention.h (a
/// variant's is its own file name: the dispatching library carries the ABI's).
let soname = variant.map { "libattention-\($0).so" } ?? "libattention.so.0"

let package = Package(
    name: "libattention",
    products: [
        .library(name: "attention", type: .dynamic, targets: ["LibAttention"]),
        .library(name: "AttentionLayers", targets: ["AttentionLayers"]),
    ],
    targets: [
        .target(name: "CAttention"),
        .target(name: "CachePrefetch"),
        .target(name: "VectorShuffles"),
        .target(
            name: "AttentionKernels",
            dependencies: ["CachePrefetch", "VectorShuffles"],
            swiftSettings: cpuFlags + kernelOptimisation
        ),
        .target(name: "AttentionLayers", dependencies: ["AttentionKernels"], swiftSettings: cpuFlags),
        .target(
            name: "LibAttention",
            dependencies: ["AttentionLayers", "CAttention"],
            exclude: ["exports.map"],
            swiftSettings: cpuFlags,
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "--version-script=\(exportsMap)",
                                            "-Xlinker", "-soname=\(soname)"])]
        ),
        .executableTarget(
            name: "AttentionBench", dependencies: ["AttentionKernels"], path: "benchmarks/AttentionBench",
            swiftSettings: cpuFlags + kernelOptimisation
        ),
        .testTarget(name: "AttentionKernelsTests", dependencies: ["AttentionKernels"], swiftSettings: cpuFlags),
        .testTarget(name: "AttentionLayersTests", dependencies: ["AttentionLayers"], swiftSettings: cpuFlags),
    ]
)
