import Glibc
import PrezeroCore
import PrezeroSys

/// The daemon side of prezero-hook: libvirt's qemu hook calls, forwarded with
/// their arguments and the domain XML. See DESIGN.md for the calls and what each
/// one's XML carries.
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

    /// Hands pre-zeroed files over for an eligible domain, or makes room for one that
    /// will take huge pages itself. Every decision is logged with its reason.
    func startBegin(_ xml: String) throws(ControlError) -> HookResult {
        let d = try parseDomain(xml, call: "start begin")
        guard let id = d.id else { throw ControlError(.badRequest, "hook start begin: the domain XML has no id; the domain is left to QEMU") }
        let conf = QemuConf.parse(Files.readText(config.qemuConf) ?? "")
        let host = HookHost(conf: conf, meminfo: Files.readText("/proc/meminfo") ?? "",
                            poolMounts: pools.map { ($0.mount.path, $0.mount.pageSize) })
        var result = HookResult()
        func say(_ s: String) {
            logger.info("domain \(d.name) (\(d.uuid)): \(s)")
            result.decisions.append(s)
        }
        switch HookPlanner.decide(d, host: host) {
        case .leaveAlone(let why):
            say("left alone: \(why)")
        case .makeRoom(let ps, let pages, let why):
            say("not handed over: \(why)")
            makeRoomForLaunch(pageSize: ps, pages: pages, say: say)
        case .handOver(let ps, let backends):
            let dirs = HookPlanner.domainDirectories(backingDir: conf.memoryBackingDir!, id: id, name: d.name)
            guard let dir = dirs.first(where: { (try? Files.openDirectory(path: $0, pathOnly: true)) != nil }) else {
                say("not handed over: libvirt's domain directory is not there (looked for \(dirs.joined(separator: ", "))); making room")
                makeRoomForLaunch(pageSize: ps, pages: HookPlanner.pagesPerNode(backends, pageSize: ps), say: say)
                break
            }
            guard let owner = d.owner ?? qemuOwner(conf) else {
                say("not handed over: no DAC label in the XML and qemu.conf's user/group do not resolve; making room")
                makeRoomForLaunch(pageSize: ps, pages: HookPlanner.pagesPerNode(backends, pageSize: ps), say: say)
                break
            }
            if d.dimms > 0 { say("\(d.dimms) memory DIMM(s) are left to QEMU") }
            for b in backends {
                let key = "\(d.uuid).\(b.alias)"
                // A lease left from an earlier run of this domain (libvirtd died before release):
                // its name is gone, so it is reclaimed like any other.
                if book.withLock({ $0.leases[key] != nil }) { _ = try? release(ReleaseRequest(lease: key)) }
                do {
                    let c = try claim(ClaimRequest(bytes: b.bytes, pageSize: ps, nodes: b.hostNodes, dest: "\(dir)/\(b.alias)",
                                                   uid: owner.uid, gid: owner.gid, mode: 0o600, lease: key))
                    result.handovers.append(c)
                    say(c.outcome == .miss
                        ? "\(b.alias): no clean file of \(ByteSize.format(b.bytes)) on nodes \(b.hostNodes.isEmpty ? "any" : "\(b.hostNodes)"); QEMU allocates it (room was made)"
                        : "\(b.alias): handed over \(ByteSize.format(b.bytes)) from node \(c.node ?? -1) (\(c.outcome.rawValue), lease \(key))")
                } catch {
                    say("\(b.alias): not handed over: \(error.message)")
                }
            }
        }
        return result
    }

    /// `stopped end` / `release end`: the domain's leases (keyed by UUID) are released;
    /// their files are scrubbed once QEMU is gone.
    func domainEnded(_ xml: String, call: String) throws(ControlError) -> HookResult {
        let d = try parseDomain(xml, call: call)
        let keys = book.withLock { b in b.leases.keys.filter { $0.hasPrefix(d.uuid + ".") }.sorted() }
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

    func qemuOwner(_ conf: QemuConf) -> (uid: UInt32, gid: UInt32)? {
        guard let u = conf.user.flatMap(Users.uid), let g = conf.group.flatMap(Users.gid) ?? Users.primaryGid(conf.user ?? "")
        else { return nil }
        return (u, g)
    }

    /// make-room for a launch the pool does not serve; "*" means the guest is not bound:
    /// free pages host-wide, from the nodes whose pools hold the most.
    func makeRoomForLaunch(pageSize: UInt64, pages: [String: UInt64], say: (String) -> Void) {
        let perNode = pages.filter { $0.key != "*" }
        if let any = pages["*"] {
            guard let mi = pools.firstIndex(where: { $0.mount.pageSize == pageSize }) else {
                say("no pool of \(ByteSize.format(pageSize)) pages: nothing to give back")
                return
            }
            var need = any * pageSize
            let free = wakeups.keys.filter { $0.mount == mi }.reduce(0) { $0 + nodeCounters($1).free }
            need -= min(need, free)
            let nodes = book.withLock { b in
                b.nodes.filter { $0.key.mount == mi }.sorted { $0.value.cleanBytes > $1.value.cleanBytes }.map(\.key)
            }
            // Keep fills out of the freed pages until the launch has taken them.
            book.withLock { b in
                for k in nodes {
                    b.nodes[k]?.holdPages = any
                    b.nodes[k]?.holdUntil = monotonicSeconds() + Double(config.makeRoomHoldS)
                }
            }
            for k in nodes where need > 0 { need -= min(need, giveBack(k, bytes: need)) }
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
