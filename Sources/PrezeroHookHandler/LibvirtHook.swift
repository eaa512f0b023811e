import PrezeroCore
import PrezeroHost
import PrezeroLibvirtModel
import PrezeroPool
import PrezeroProtocol
import PrezeroQemuModel
import PrezeroSys

/// The daemon side of prezero-hook, as prezerod hands it to its PoolDaemon: libvirt's
/// qemu hook calls, forwarded with their arguments and the domain XML. See DESIGN.md
/// for the calls and what each one's XML carries.
public struct LibvirtHookHandler: HookHandling {
    /// A handler with no state of its own: each call reads what it needs afresh.
    public init() {}

    /// Acts on one hook call: `start begin` hands files over and makes room; `stopped end` and
    /// `release end` release the domain's leases; any other call does nothing.
    public func hook(_ h: HookRequest, daemon: PoolDaemon) throws(ControlError) -> HookResult { try daemon.hook(h) }
}

extension PoolDaemon {
    func hook(_ h: HookRequest) throws(ControlError) -> HookResult {
        guard h.args.count >= 3 else {
            throw ControlError(.badRequest, "hook: expected the arguments DOMAIN OPERATION SUB-OPERATION, got \(h.args.count)")
        }
        let (op, sub) = (h.args[1], h.args[2])
        switch (op, sub) {
        case ("start", "begin"):
            return try startBegin(h.stdin)
        case ("stopped", "end"), ("release", "end"):
            return try domainEnded(h.stdin, call: "\(op) \(sub)")
        default:
            return HookResult(decisions: ["\(op) \(sub): nothing to do"])
        }
    }

    func parseDomain(_ xml: String, call: String) throws(ControlError) -> DomainMemory {
        do {
            return try DomainXML.parse(xml)
        } catch {
            throw ControlError(.badRequest, "hook \(call): \(error.description); the domain is left to QEMU")
        }
    }

    func hookHost(for d: DomainMemory, call: String) throws(ControlError) -> (QemuConf, HookHost) {
        do {
            return try HostDiscovery.hookHost(qemuConf: config.qemuConf, capabilities: config.libvirtCapabilitiesCache, domain: d,
                                              poolMounts: poolMounts.map { HookHost.Mount(path: $0.path, pageSize: $0.pageSize) })
        } catch {
            throw ControlError(.badRequest, "hook \(call): \(error.description); the domain is left to libvirt")
        }
    }

    /// Plans every backend of the domain as its libvirt will create it; hands pre-zeroed files
    /// over for the eligible ones, and makes room for the ones that take huge pages themselves.
    /// Every decision is logged with its reason.
    func startBegin(_ xml: String) throws(ControlError) -> HookResult {
        let d = try parseDomain(xml, call: "start begin")
        guard let id = d.id else { throw ControlError(.badRequest, "hook start begin: the domain XML has no id; the domain is left to QEMU") }
        let (conf, host) = try hookHost(for: d, call: "start begin")
        var plan: DomainPlan
        do {
            plan = try HookPlanner.plan(d, host: host)
        } catch {
            throw ControlError(.badRequest, "hook start begin: \(error.description); the domain is left to libvirt")
        }
        var result = HookResult()
        func say(_ s: String) {
            logger.info("domain \(d.name) (\(d.uuid)): \(s)")
            result.decisions.append(s)
        }
        say("planned by libvirt \(host.rules)'s rules\(host.libvirtVersion == nil ? " (no version in \(config.libvirtCapabilitiesCache))" : "")")
        for p in plan.backends {
            say("\(p.backend.id ?? "system RAM (id unknown)") (\(p.backend.device), \(ByteSize.format(p.backend.bytes))): \(p.decision.rawValue): \(p.reason)")
        }
        // A hand-over needs libvirt's domain directory and the QEMU owner; without them
        // the backends fall back to QEMU allocating, after room is made.
        func fallBack(_ why: String) {
            say("not handed over: \(why); making room")
            for i in plan.backends.indices where plan.backends[i].decision == .handOver {
                plan.backends[i].decision = .makeRoom
                result.failed.append("\(plan.backends[i].backend.alias ?? "?"): \(why)")
            }
        }
        // Looked up only for a domain with something to hand over: every other start skips the I/O.
        var target: (dir: String, owner: DomainMemory.Owner)?
        if !plan.handOvers.isEmpty {
            let dirs = HookPlanner.domainDirectories(base: host.backingBase, id: id, name: d.name)
            if let dir = dirs.first(where: { (try? Files.openDirectory(path: $0, pathOnly: true)) != nil }) {
                if let owner = d.owner ?? qemuOwner(conf) { target = (dir, owner) }
                else { fallBack("no DAC label in the XML and qemu.conf's user/group do not resolve") }
            } else {
                fallBack("libvirt's domain directory is not there (looked for \(dirs.joined(separator: ", ")))")
            }
        }
        // Claims first: they take clean files, which making room would give back.
        if let (dir, owner) = target {
            for p in plan.handOvers {
                let b = p.backend
                guard let alias = b.alias else { continue }
                let key = "\(d.uuid).\(alias)"
                // A lease left from an earlier run of this domain (libvirtd died before release):
                // its name is gone, so it is reclaimed like any other.
                if hasLease(key) { _ = try? release(ReleaseRequest(lease: key)) }
                do {
                    let c = try claim(ClaimRequest(bytes: b.bytes, pageSize: p.pageSize, nodes: b.hostNodes, dest: "\(dir)/\(alias)",
                                                   uid: owner.uid, gid: owner.gid, mode: 0o600, lease: key))
                    result.handovers.append(c)
                    say(c.outcome == .miss
                        ? "\(alias): no clean file of \(ByteSize.format(b.bytes)) on nodes \(b.hostNodes.isEmpty ? "any" : "\(b.hostNodes)"); QEMU allocates it (room was made)"
                        : "\(alias): handed over \(ByteSize.format(b.bytes)) from node \(c.node ?? -1) (\(c.outcome.rawValue), lease \(key))")
                } catch {
                    say("\(alias): not handed over: \(error.message)")
                    result.failed.append("\(alias): \(error.message)")
                }
            }
        }
        for (ps, pages) in plan.makeRoom().sorted(by: { $0.key < $1.key }) {
            makeRoomForLaunch(pageSize: ps, pages: pages, say: say)
        }
        if plan.backends.allSatisfy({ $0.decision == .nothing }) { say("left alone: no backend takes huge pages") }
        return result
    }

    /// `stopped end` / `release end`: the domain's leases (keyed by UUID) are released;
    /// their files are taken back once QEMU is gone.
    func domainEnded(_ xml: String, call: String) throws(ControlError) -> HookResult {
        let d = try parseDomain(xml, call: call)
        let keys = leaseKeys(group: d.uuid)
        var result = HookResult()
        for key in keys {
            do {
                _ = try release(ReleaseRequest(lease: key))
                result.released.append(key)
            } catch {
                result.decisions.append("\(key): \(error.message)")
            }
        }
        let line = keys.isEmpty ? "\(call): no leases" : "\(call): released \(keys.joined(separator: ", "))"
        logger.info("domain \(d.name) (\(d.uuid)): \(line)")
        result.decisions.append(line)
        return result
    }

    func qemuOwner(_ conf: QemuConf) -> DomainMemory.Owner? {
        guard let u = conf.user.flatMap(Users.uid), let g = conf.group.flatMap(Users.gid) ?? Users.primaryGid(conf.user ?? "")
        else { return nil }
        return DomainMemory.Owner(uid: u, gid: g)
    }

    /// make-room for a launch the pool does not serve; memory bound to no node needs pages
    /// free host-wide, given back from the nodes whose pools hold the most.
    func makeRoomForLaunch(pageSize: UInt64, pages: [NodeChoice: UInt64], say: (String) -> Void) {
        var perNode: [String: UInt64] = [:]
        for (k, v) in pages { if let n = k.node { perNode[String(n), default: 0] += v } }
        // Bound where numad says at start: each node the pool serves gets room for all of it.
        if let every = pages[.every] {
            for n in Numa.memoryNodes() { perNode[String(n), default: 0] += every }
        }
        if let any = pages[.any] {
            guard makeRoomAnywhere(pageSize: pageSize, pages: any) else {
                say("no pool of \(ByteSize.format(pageSize)) pages: nothing to give back")
                return
            }
            say("made room for \(any) pages on any node")
        }
        guard !perNode.isEmpty else { return }
        do {
            let r = try makeRoom(MakeRoomRequest(pageSize: pageSize, pages: perNode))
            say("made room: \(r.free.sorted { $0.key < $1.key }.map { "node \($0.key) has \($0.value) pages free" }.joined(separator: ", "))")
        } catch {
            say("make-room failed: \(error.message)")
        }
    }
}
