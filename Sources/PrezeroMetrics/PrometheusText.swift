import PrezeroCore
import PrezeroProtocol
import Prometheus

/// prezerod's counters in the Prometheus text format: what `prezero metrics` prints and
/// what prezerod writes for node_exporter's textfile collector.
public enum PrometheusText {
    /// A status as `prezero_*` metrics: per node by mount, page size and node, then per mount,
    /// and per lease (with its VM, so a VM's pool pages can be summed).
    public static func render(_ s: StatusResult) -> String {
        let r = PrometheusCollectorRegistry()
        for m in s.mounts {
            for n in m.nodes {
                let labels = [("mount", m.path), ("page_size", "\(m.pageSize)"), ("node", "\(n.node)")]
                func gauge(_ name: String, _ help: String, _ v: Double) {
                    r.makeGauge(descriptor: descriptor(name, help), labels: labels).set(to: v)
                }
                gauge("hugepages_total_bytes", "Huge pages reserved on the node", Double(n.totalBytes))
                gauge("hugepages_free_bytes", "Free huge pages on the node", Double(n.freeBytes))
                gauge("pool_target_bytes", "Bytes the pool aims to hold clean", Double(n.targetBytes))
                gauge("pool_clean_bytes", "Pre-zeroed bytes ready to hand out", Double(n.cleanBytes))
                gauge("held_outside_bytes", "Pages of released files still pinned outside the pool (io_uring buffers, pipes): not free, never reused", Double(n.heldBytes))
                gauge("pool_leased_bytes", "Bytes handed out to VMs", Double(n.leasedBytes))
                gauge("pool_releasing_bytes", "Bytes of released files not taken back yet (still open somewhere, or not reached yet)", Double(n.releasingBytes))
                gauge("pool_filling_bytes", "Bytes being filled", Double(n.fillingBytes))
                gauge("fill_rate_bytes_per_second", "Rate of the node's last refill, all of its fill workers together", n.fillRate)
                gauge("fill_workers", "Files the node fills at once (fill_workers)", Double(n.fillWorkers))
                func counter(_ name: String, _ help: String, _ v: UInt64, _ extra: [(String, String)] = []) {
                    r.makeCounter(descriptor: descriptor(name, help), labels: labels + extra).increment(by: Int64(v))
                }
                counter("filled_bytes_total", "Bytes filled by fallocate", n.filledBytes)
                counter("recycled_bytes_total", "Bytes of released files given back to the kernel", n.recycledBytes)
                counter("recycled_files_total", "Released files taken back", n.recycledFiles)
                counter("yielded_bytes_total", "Bytes given back to the kernel for other users", n.yieldedBytes)
                for o in ClaimOutcome.allCases {
                    counter("claims_total", "Claims by outcome", n.outcomes[o] ?? 0, [("outcome", o.rawValue)])
                }
            }
            r.makeGauge(descriptor: descriptor("quarantined_files", "Files set aside as not understood"), labels: [("mount", m.path)])
                .set(to: Double(m.quarantined))
            for h in m.held {
                let labels = [("mount", m.path), ("page_size", "\(m.pageSize)"), ("node", "\(h.node)"), ("lease", h.lease)]
                r.makeGauge(descriptor: descriptor("lease_held_outside_bytes", "Pages a released lease left pinned outside the pool"),
                            labels: labels).set(to: Double(h.bytes))
            }
            r.makeGauge(descriptor: descriptor("outside_names_files", "Files taken back with a name outside the pool (the last 16)"),
                        labels: [("mount", m.path)]).set(to: Double(m.outsideNames.count))
            for l in m.leases {
                let labels = [("mount", m.path), ("page_size", "\(m.pageSize)"), ("node", "\(l.node)"), ("vm", l.vm), ("lease", l.lease)]
                r.makeGauge(descriptor: descriptor("lease_bytes", "Bytes of a file handed out, by lease and VM (sum by vm for a VM's pool pages)"),
                            labels: labels).set(to: Double(l.bytes))
            }
        }
        for op in Operation.allCases {
            r.makeCounter(descriptor: descriptor("requests_refused_total", "Requests prezerod refused since it started, by operation (hook: starts that fell back or were refused)"),
                          labels: [("operation", op.rawValue)]).increment(by: Int64(s.refused[op.rawValue] ?? 0))
        }
        r.makeCounter(descriptor: descriptor("hook_failed_handovers_total", "Memory backends whose hand-over the hook planned and that failed, since prezerod started"))
            .increment(by: Int64(s.failedHandovers))
        return r.emitToString()
    }

    /// `prezero_<name>`; the unit is already the tail of each name (`_bytes`, `_total`).
    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        let parts = name.split(separator: "_")
        return MetricNameDescriptor(namespace: "prezero", metricName: parts.dropLast().joined(separator: "_"),
                                    unitName: String(parts.last!), helpText: help)
    }
}
