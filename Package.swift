// swift-tools-version:6.2
import PackageDescription

// Root targets only: dependencies keep their own warning settings.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "prezero",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "prezerod", targets: ["prezerod"]),
        .executable(name: "prezero", targets: ["prezero"]),
        .executable(name: "prezero-hook", targets: ["prezero-hook"]),
        .executable(name: "prezero-bench", targets: ["prezero-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C: the _GNU_SOURCE-only calls and the zeroing loops.
        .target(name: "PrezeroCShims", cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2"])]),
        .systemLibrary(name: "CNuma", pkgConfig: "numa", providers: [.apt(["libnuma-dev"])]),
        .systemLibrary(name: "CLibvirt", pkgConfig: "libvirt", providers: [.apt(["libvirt-dev"])]),

        // The control protocol and its JSON: no Foundation, so the static hook shares it.
        .target(name: "PrezeroProtocol", swiftSettings: strict),
        // Pure logic: no syscalls, inputs as values; the standard library alone, so that the
        // static prezero-bench links the pool without Foundation or libxml2.
        .target(name: "PrezeroCore", dependencies: ["PrezeroProtocol"], swiftSettings: strict),
        // What QEMU and libvirt read and decide, as pure logic on the standard library alone:
        // qemu.conf's grammar, the mounts libvirt uses, KVM or TCG, `prezero launch`'s plan.
        .target(name: "PrezeroQemuModel", dependencies: ["PrezeroProtocol", "PrezeroCore"], swiftSettings: strict),
        // libvirt's side as pure logic: domain XML (FoundationXML), its backends, the hook's plan.
        .target(name: "PrezeroLibvirtModel", dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel"], swiftSettings: strict),
        // prezerod's YAML config file read into PrezeroCore's Config (Yams, Foundation).
        .target(name: "PrezeroConfigYAML", dependencies: ["PrezeroProtocol", "PrezeroCore", .product(name: "Yams", package: "Yams")],
                swiftSettings: strict),
        // The one place that calls each syscall.
        .target(name: "PrezeroSys", dependencies: ["PrezeroCShims", "CNuma"], swiftSettings: strict),
        // The host's facts, read in one place below the daemon and the CLI: hugetlbfs mounts and
        // page sizes, the pool mounts a config names, /proc's meminfo and mountinfo, libvirt's
        // capabilities cache (as text: the XML is read by PrezeroLibvirtModel).
        .target(name: "PrezeroHost", dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroSys"], swiftSettings: strict),
        // Client side of the control socket (CLI, hook, tests).
        .target(name: "PrezeroClient", dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroSys"], swiftSettings: strict),
        // The daemon's engine: pool directories, node workers, scrubber, control server.
        .target(
            name: "PrezeroPool",
            dependencies: [
                "PrezeroProtocol", "PrezeroCore", "PrezeroSys", "PrezeroHost",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The daemon's side of libvirt's hook (domain XML in, hand-overs out), given to PoolDaemon by prezerod.
        .target(
            name: "PrezeroHookHandler",
            dependencies: [
                "PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroLibvirtModel", "PrezeroSys", "PrezeroHost", "PrezeroPool",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The pool and storm benchmarks: an in-process pool on a temporary mount, no Foundation.
        .target(
            name: "PrezeroBench",
            dependencies: [
                "PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroSys", "PrezeroHost", "PrezeroPool", "PrezeroClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        // The status as Prometheus text, for the CLI and the daemon's textfile.
        .target(
            name: "PrezeroMetrics",
            dependencies: ["PrezeroProtocol", "PrezeroCore", .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: strict),
        // libvirt's C API, for the CLI only (never the hook: linking libvirt costs ~11 ms a process).
        .target(name: "PrezeroLibvirt", dependencies: ["CLibvirt"], swiftSettings: strict),

        // The private environment the demo, the benches and the host tests run in: huge pages
        // reserved, a private mount and prezerod, /dev/kvm's mode, libvirt pointed at the pool
        // with the hook, the test guest; each made and undone in one place.
        .target(
            name: "PrezeroLab",
            dependencies: ["PrezeroProtocol", "PrezeroQemuModel", "PrezeroLibvirtModel", "PrezeroSys", "PrezeroClient"],
            swiftSettings: strict),

        .executableTarget(
            name: "prezerod",
            dependencies: [
                "PrezeroPool", "PrezeroHost", "PrezeroProtocol", "PrezeroCore", "PrezeroMetrics", "PrezeroConfigYAML", "PrezeroHookHandler",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "prezero",
            dependencies: [
                "PrezeroClient", "PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroSys", "PrezeroHost", "PrezeroLibvirt",
                "PrezeroMetrics", "PrezeroLibvirtModel", "PrezeroConfigYAML", "PrezeroHookHandler", "PrezeroBench", "PrezeroLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // libvirt's hook: no libvirt, no XML parser, no Foundation.
        // Fully static: libvirt runs it several times a start, and a static executable
        // starts in ~1 ms where one with shared libraries takes ~3 (measured here).
        .executableTarget(name: "prezero-hook", dependencies: ["PrezeroProtocol", "PrezeroSys"], swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),
        // The pool and storm benchmarks as one static binary: it runs on a machine with no
        // Swift, libvirt, QEMU, libxml2 or network (`make bench-bundle`). Its arguments are
        // read by hand: ArgumentParser would link FoundationEssentials.
        .executableTarget(name: "prezero-bench", dependencies: ["PrezeroBench"], swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),

        .testTarget(name: "PrezeroCoreTests", dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroLibvirtModel", "PrezeroConfigYAML"],
                    exclude: ["Fixtures"], swiftSettings: strict),
        // The benchmarks' pure parts: arguments, statistics, the bundle's sizes.
        .testTarget(name: "PrezeroBenchTests", dependencies: ["PrezeroBench"], swiftSettings: strict),
        // The pool engine over an in-memory model file system, and the control server with a
        // scripted handler: no root, no huge pages.
        .testTarget(
            name: "PrezeroPoolTests",
            dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroPool", "PrezeroSys", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        // prezero-hook and prezero-bench are no dependencies: their -static-executable would be
        // linked into the test binary. `swift build --build-tests` builds them all the same.
        .testTarget(
            name: "PrezeroHostTests",
            dependencies: ["PrezeroProtocol", "PrezeroCore", "PrezeroQemuModel", "PrezeroLibvirtModel", "PrezeroHookHandler", "PrezeroSys", "PrezeroHost", "PrezeroClient",
                           "PrezeroBench", "PrezeroLab", "prezerod", "prezero"],
            swiftSettings: strict),
    ]
)
