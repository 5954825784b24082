// swift-tools-version:6.0
// libattention: Keras's attention layers in Swift, exported as a C library (libattention.so).
import PackageDescription

/// The CPU the kernels are compiled for; `make TARGET_CPU=haswell` (or any LLVM CPU name)
/// sets it through the environment. The default is the machine that builds (the widest SIMD
/// it has); portable builds name an older CPU.
let targetCPU = Context.environment["ATTENTION_TARGET_CPU"] ?? "native"
/// CPUs without FMA: the kernels then multiply and add instead of calling fma per lane.
let withoutFMA: Set = ["x86-64", "x86-64-v2", "core2", "penryn", "nehalem", "westmere", "sandybridge", "ivybridge",
                       "k8", "btver1", "btver2", "silvermont", "goldmont"]
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]
    + (withoutFMA.contains(targetCPU) ? [.define("ATTENTION_NO_FMA")] : [])
let exportsMap = Context.packageDirectory + "/Sources/LibAttention/exports.map"
/// The library's SONAME: its ABI version, ATT_VERSION_MAJOR of include/attention.h.
let soname = "libattention.so.0"

let package = Package(
    name: "libattention",
    products: [
        .library(name: "attention", type: .dynamic, targets: ["LibAttention"]),
        .library(name: "AttentionLayers", targets: ["AttentionLayers"]),
    ],
    targets: [
        .target(name: "CAttention"),
        .target(
            name: "AttentionKernels",
            swiftSettings: cpuFlags + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
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
            swiftSettings: cpuFlags + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .testTarget(name: "AttentionKernelsTests", dependencies: ["AttentionKernels"], swiftSettings: cpuFlags),
        .testTarget(name: "AttentionLayersTests", dependencies: ["AttentionLayers"], swiftSettings: cpuFlags),
    ]
)
