import Foundation
import PrezeroBench

/// A line chart as SVG: medians joined by lines, each with its min–max range as a bar.
enum Chart {
    struct Series {
        var label: String
        var color: String
        /// x and the spread measured there.
        var points: [(x: Double, y: Spread)]
    }

    static func svg(title: String, subtitle: String, xLabel: String, yLabel: String, series: [Series],
                    xTick: (Double) -> String) -> String {
        let (w, h) = (720.0, 440.0)
        let (left, right, top, bottom) = (70.0, 180.0, 60.0, 60.0)
        let xs = series.flatMap { $0.points.map(\.x) }
        let xMax = xs.max() ?? 1, xMin = 0.0
        let yMax = niceCeiling(series.flatMap { $0.points.map(\.y.max) }.max() ?? 1)
        func px(_ x: Double) -> Double { left + (x - xMin) / max(xMax - xMin, 1e-9) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - y / yMax * (h - top - bottom) }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" viewBox="0 0 \(Int(w)) \(Int(h))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(n(left))" y="24" font-size="16" font-weight="bold">\(esc(title))</text>
            <text x="\(n(left))" y="42" fill="#555">\(esc(subtitle))</text>

            """
        // Axes, grid and ticks.
        let yTicks = 5
        for i in 0...yTicks {
            let v = yMax * Double(i) / Double(yTicks)
            out += "<line x1=\"\(n(left))\" y1=\"\(n(py(v)))\" x2=\"\(n(w - right))\" y2=\"\(n(py(v)))\" stroke=\"#e5e5e5\"/>\n"
            out += "<text x=\"\(n(left - 8))\" y=\"\(n(py(v) + 4))\" text-anchor=\"end\">\(String(format: "%.2f", v))</text>\n"
        }
        for x in Set(xs).sorted() {
            out += "<text x=\"\(n(px(x)))\" y=\"\(n(h - bottom + 18))\" text-anchor=\"middle\">\(esc(xTick(x)))</text>\n"
        }
        out += "<line x1=\"\(n(left))\" y1=\"\(n(h - bottom))\" x2=\"\(n(w - right))\" y2=\"\(n(h - bottom))\" stroke=\"#333\"/>\n"
        out += "<line x1=\"\(n(left))\" y1=\"\(n(top))\" x2=\"\(n(left))\" y2=\"\(n(h - bottom))\" stroke=\"#333\"/>\n"
        out += "<text x=\"\(n((left + w - right) / 2))\" y=\"\(n(h - 16))\" text-anchor=\"middle\">\(esc(xLabel))</text>\n"
        out += "<text transform=\"translate(18 \(n((top + h - bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(esc(yLabel))</text>\n"
        // Series: range bars, the median line, points, and the legend.
        for (i, s) in series.enumerated() {
            let pts = s.points.sorted { $0.x < $1.x }
            for p in pts {
                out += "<line x1=\"\(n(px(p.x)))\" y1=\"\(n(py(p.y.min)))\" x2=\"\(n(px(p.x)))\" y2=\"\(n(py(p.y.max)))\" stroke=\"\(s.color)\" stroke-width=\"2\" opacity=\"0.4\"/>\n"
            }
            out += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2.5\" points=\"\(pts.map { "\(n(px($0.x))),\(n(py($0.y.median)))" }.joined(separator: " "))\"/>\n"
            for p in pts {
                out += "<circle cx=\"\(n(px(p.x)))\" cy=\"\(n(py(p.y.median)))\" r=\"4\" fill=\"\(s.color)\"><title>\(esc(s.label)) \(esc(xTick(p.x))): \(p.y.text()) s</title></circle>\n"
            }
            let ly = top + 10 + Double(i) * 22
            out += "<line x1=\"\(n(w - right + 16))\" y1=\"\(n(ly))\" x2=\"\(n(w - right + 40))\" y2=\"\(n(ly))\" stroke=\"\(s.color)\" stroke-width=\"2.5\"/>\n"
            out += "<text x=\"\(n(w - right + 46))\" y=\"\(n(ly + 4))\">\(esc(s.label))</text>\n"
        }
        out += "<text x=\"\(n(w - right + 16))\" y=\"\(n(top + 10 + Double(series.count) * 22 + 4))\" fill=\"#555\">bars: min–max</text>\n"
        return out + "</svg>\n"
    }

    /// 1, 2 or 5 times a power of ten, at or above `v`.
    static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let p = pow(10, floor(log10(v)))
        return [1.0, 2, 5, 10].map { $0 * p }.first { $0 >= v } ?? 10 * p
    }
}
