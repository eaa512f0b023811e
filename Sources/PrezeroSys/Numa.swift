import CNuma
import Glibc
import PrezeroCShims

/// NUMA topology and per-thread placement, through libnuma.
public enum Numa {
    /// Nodes that have memory. A host without NUMA support is one node, 0.
    /// The corresponding C functions are libnuma's `numa_max_node` and `numa_node_size64`.
    public static func memoryNodes() -> [Int] {
        guard numa_available() >= 0 else { return [0] }
        let maxNode = Int(numa_max_node())
        let nodes = (0...maxNode).filter { numa_node_size64(Int32($0), nil) > 0 }
        return nodes.isEmpty ? [0] : nodes
    }

    /// CPUs of a node; empty when the node has none (memory-only nodes).
    /// The corresponding C function is libnuma's `numa_node_to_cpus`.
    public static func cpus(ofNode node: Int) -> [Int] {
        guard numa_available() >= 0, let mask = numa_allocate_cpumask() else { return [] }
        defer { numa_free_cpumask(mask) }
        guard numa_node_to_cpus(Int32(node), mask) == 0 else { return [] }
        let count = Int(numa_num_possible_cpus())
        return (0..<count).filter { numa_bitmask_isbitset(mask, UInt32($0)) != 0 }
    }

    /// Binds the calling thread's future allocations strictly to `node` (MPOL_BIND).
    /// The corresponding C call is `numa_set_membind`, i.e. `set_mempolicy(MPOL_BIND)`.
    public static func bindMemory(toNode node: Int) {
        guard numa_available() >= 0, let mask = numa_allocate_nodemask() else { return }
        defer { numa_bitmask_free(mask) }
        numa_bitmask_setbit(mask, UInt32(node))
        numa_set_membind(mask)
    }

    /// Runs `body` with the calling thread's allocations bound to `node`, then puts the
    /// thread's own policy back (a worker stays bound to its node; any other thread goes
    /// back to its default). The corresponding C calls are `get_mempolicy` and `set_mempolicy`.
    public static func withMemory<R, E: Error>(onNode node: Int, _ body: () throws(E) -> R) throws(E) -> R {
        var mode: Int32 = 0
        var mask = [UInt](repeating: 0, count: 16)
        let bits = UInt(mask.count * UInt.bitWidth)
        let saved = numa_available() >= 0 && get_mempolicy(&mode, &mask, bits, nil, 0) == 0
        bindMemory(toNode: node)
        defer {
            if saved { _ = set_mempolicy(mode, &mask, bits) } else { resetMemoryPolicy() }
        }
        return try body()
    }

    /// Restores the default memory policy of the calling thread.
    /// The corresponding C function is libnuma's `numa_set_localalloc`.
    public static func resetMemoryPolicy() {
        guard numa_available() >= 0 else { return }
        numa_set_localalloc()
    }

    /// Pins the calling thread to `cpus`. The corresponding C function is `sched_setaffinity`.
    public static func pinThread(toCPUs cpus: [Int]) throws(SysError) {
        guard !cpus.isEmpty else { return }
        let c32 = cpus.map { Int32($0) }
        try check("sched_setaffinity", "cpus \(cpus)") { c32.withUnsafeBufferPointer { pz_set_thread_cpus($0.baseAddress, Int32($0.count)) } }
    }

    /// CPUs the calling thread may run on.
    /// The corresponding C function is `sched_getaffinity`.
    public static func threadCPUs() -> [Int] {
        var buf = [Int32](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBufferPointer { pz_thread_cpus($0.baseAddress, Int32($0.count)) }
        return n > 0 ? buf[0..<Int(n)].map(Int.init) : []
    }

    /// The calling thread's kernel thread ID, for a worker's log line.
    /// The corresponding C call is the `gettid` system call.
    public static func threadID() -> Int32 { pz_gettid() }
}
