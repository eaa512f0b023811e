/// How a claim was served.
public enum ClaimOutcome: String, Codable, CodingKeyRepresentable, Sendable, CaseIterable {
    /// A clean file of exactly the requested size.
    case hit
    /// The smallest larger clean file, cut to size; the tail went back to the kernel.
    case truncated
    /// The largest smaller clean file, extended by fallocate at claim time.
    case partial
    /// Nothing clean on an allowed node: the caller gets no file.
    case miss
}
