import PrezeroBench
import Testing

@Suite("bench figures: medians, quantiles and numbers as text without Foundation")
struct FiguresTests {
    @Test("a spread is the median, the smallest and the largest of its runs")
    func spread() {
        #expect(Spread([3, 1, 2]) == Spread(median: 2, min: 1, max: 3, runs: 3))
        #expect(Spread([4, 1, 2, 3]).median == 2.5)
        #expect(Spread([]).runs == 0)
        #expect(Spread([0.5, 1.25, 2]).text(2) == "1.25 [0.50–2.00]")
    }

    @Test("fixed rounds to the digits asked, with the sign and leading zeros of the fraction")
    func fixed() {
        #expect(Figures.fixed(1.005, 1) == "1.0")
        #expect(Figures.fixed(2.0456, 3) == "2.046")
        #expect(Figures.fixed(-0.25, 2) == "-0.25")
        #expect(Figures.fixed(7, 0) == "7")
        #expect(Figures.fixed(0.0001, 4) == "0.0001")
        #expect(Figures.fixed(.infinity, 2) == "inf")
    }

    @Test("quantiles by nearest rank")
    func quantile() {
        let xs = (1...100).map(Double.init)
        #expect(Figures.quantile(xs, 0.5) == 50)
        #expect(Figures.quantile(xs, 0.99) == 99)
        #expect(Figures.quantile(xs, 1) == 100)
        #expect(Figures.quantile([], 0.5) == 0)
    }
}

extension Spread {
    init(median: Double, min: Double, max: Double, runs: Int) {
        self.init([])
        self.median = median
        self.min = min
        self.max = max
        self.runs = runs
    }
}
