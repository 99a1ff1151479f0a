import Foundation
import Tensors

/// A self-contained HTML report (inline SVG charts, no scripts, no network) comparing runs:
/// loss and accuracy per epoch for each run, per-class accuracy teacher against student, the
/// student's per-class precision, recall and F1, its confusion matrix and reliability
/// diagram, and the teacher-student table (with macro-F1).
public enum HTMLReport {
    /// One run's numbers: its name, per-epoch records and final evaluation.
    public struct Run {
        public var name: String
        public var epochs: [EpochRecord]
        public var evaluation: DistillationReport?
        public init(name: String, epochs: [EpochRecord], evaluation: DistillationReport?) {
            self.name = name
            self.epochs = epochs
            self.evaluation = evaluation
        }

        /// Reads `metrics.jsonl` and `evaluation.json` from a run folder written by `distill distill`.
        public static func load(_ directory: String) throws -> Run {
            let metrics = (directory as NSString).appendingPathComponent("metrics.jsonl")
            guard let text = try? String(contentsOfFile: metrics, encoding: .utf8) else {
                throw FileError(file: metrics, "does not exist or cannot be read (is \(directory) a distillation run folder?)")
            }
            let decoder = JSONDecoder()
            var epochs: [EpochRecord] = []
            for (number, line) in text.split(separator: "\n").enumerated() {
                do { epochs.append(try decoder.decode(EpochRecord.self, from: Data(line.utf8))) } catch {
                    throw FileError(file: "\(metrics):\(number + 1)", "is not an epoch record")
                }
            }
            let evaluationPath = (directory as NSString).appendingPathComponent("evaluation.json")
            var evaluation: DistillationReport?
            if let data = FileManager.default.contents(atPath: evaluationPath) {
                do { evaluation = try decoder.decode(DistillationReport.self, from: data) } catch {
                    throw FileError(file: evaluationPath, "is not a distillation evaluation")
                }
            }
            return Run(name: (directory as NSString).lastPathComponent, epochs: epochs, evaluation: evaluation)
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A line chart of `series` (name, points) with axes and a legend, as inline SVG.
    static func lineChart(title: String, xLabel: String = "epoch", yLabel: String, series: [(String, [(Double, Double)])], markersOnly: Bool = false) -> String {
        let (w, h, left, bottom, top, right) = (520.0, 260.0, 56.0, 36.0, 28.0, 130.0)
        let points = series.flatMap(\.1)
        guard !points.isEmpty else { return "" }
        let xs = points.map(\.0), ys = points.map(\.1)
        let (x0, x1) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
        var (y0, y1) = (ys.min()!, ys.max()!)
        if y1 - y0 < 1e-9 { y0 -= 0.5; y1 += 0.5 }
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - bottom - top) }
        var svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\">"
        svg += "<text x=\"\(Int(left))\" y=\"18\" font-weight=\"bold\">\(escape(title))</text>"
        svg += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"#444\"/>"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"#444\"/>"
        for k in 0...4 {
            let y = y0 + (y1 - y0) * Double(k) / 4
            svg += "<text x=\"\(left - 6)\" y=\"\(py(y) + 4)\" text-anchor=\"end\" font-size=\"11\">\(String(format: "%.3g", y))</text>"
            svg += "<line x1=\"\(left)\" y1=\"\(py(y))\" x2=\"\(w - right)\" y2=\"\(py(y))\" stroke=\"#eee\"/>"
        }
        for k in 0...4 {
            let x = x0 + (x1 - x0) * Double(k) / 4
            svg += "<line x1=\"\(px(x))\" y1=\"\(h - bottom)\" x2=\"\(px(x))\" y2=\"\(h - bottom + 4)\" stroke=\"#444\"/>"
            svg += "<text class=\"tick\" x=\"\(px(x))\" y=\"\(h - bottom + 15)\" text-anchor=\"middle\" font-size=\"11\">\(String(format: "%.3g", x))</text>"
        }
        svg += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 4)\" text-anchor=\"middle\" font-size=\"11\">\(escape(xLabel))</text>"
        svg += "<text x=\"14\" y=\"\((top + h - bottom) / 2)\" font-size=\"11\" transform=\"rotate(-90 14 \((top + h - bottom) / 2))\" text-anchor=\"middle\">\(escape(yLabel))</text>"
        for (i, (name, data)) in series.enumerated() {
            let color = palette[i % palette.count]
            let path = data.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            if !markersOnly { svg += "<polyline class=\"series\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(path)\"/>" }
            for (x, y) in data { svg += "<circle class=\"\(markersOnly ? "scatter" : "point")\" cx=\"\(px(x))\" cy=\"\(py(y))\" r=\"\(markersOnly ? 5 : 3)\" fill=\"\(color)\"/>" }
            svg += "<rect x=\"\(w - right + 10)\" y=\"\(top + Double(i) * 18)\" width=\"12\" height=\"12\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(w - right + 28)\" y=\"\(top + Double(i) * 18 + 10)\" font-size=\"11\">\(escape(name))</text>"
        }
        return svg + "</svg>"
    }

    /// Grouped bars: per class, one bar per series (accuracy in [0, 1]).
    static func barChart(title: String, classes: [String], series: [(String, [Double])]) -> String {
        let (w, h, left, bottom, top) = (640.0, 290.0, 48.0, 70.0, 40.0)
        let group = (w - left - 20) / Double(max(classes.count, 1)), bar = group * 0.8 / Double(max(series.count, 1))
        var svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\">"
        svg += "<text x=\"\(Int(left))\" y=\"18\" font-weight=\"bold\">\(escape(title))</text>"
        for k in 0...4 {
            let y = h - bottom - Double(k) / 4 * (h - bottom - top)
            svg += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(w - 20)\" y2=\"\(y)\" stroke=\"#eee\"/><text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\" font-size=\"11\">\(k * 25)%</text>"
        }
        for (c, name) in classes.enumerated() {
            let x = left + Double(c) * group
            for (s, (_, values)) in series.enumerated() where c < values.count {
                let height = values[c] * (h - bottom - top)
                svg += "<rect class=\"bar\" x=\"\(x + group * 0.1 + Double(s) * bar)\" y=\"\(h - bottom - height)\" width=\"\(bar)\" height=\"\(height)\" fill=\"\(palette[s % palette.count])\"/>"
            }
            svg += "<text x=\"\(x + group / 2)\" y=\"\(h - bottom + 14)\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-35 \(x + group / 2) \(h - bottom + 14))\">\(escape(name))</text>"
        }
        for (s, (name, _)) in series.enumerated() {
            // The legend sits on the title line, right, clear of the bars.
            svg += "<rect x=\"\(w - 220 + Double(s) * 90)\" y=\"8\" width=\"12\" height=\"12\" fill=\"\(palette[s % palette.count])\"/><text x=\"\(w - 202 + Double(s) * 90)\" y=\"18\" font-size=\"11\">\(escape(name))</text>"
        }
        return svg + "</svg>"
    }

    /// The student's per-class scores: support, precision, recall and F1 (and the teacher's F1
    /// beside them, when there is a teacher), then macro-F1.
    static func perClassTable(_ m: ClassificationMetrics, teacher: ClassificationMetrics?) -> String {
        var html = "<table class=\"per-class\"><tr><th>class</th><th>support</th><th>precision</th><th>recall</th><th>F1</th>"
            + (teacher == nil ? "" : "<th>teacher F1</th>") + "</tr>"
        func cell(_ values: [Double]?, _ c: Int) -> String {
            "<td>\(values.flatMap { c < $0.count ? String(format: "%.4f", $0[c]) : nil } ?? "—")</td>"
        }
        for c in m.f1.indices {
            html += "<tr><td>\(escape(c < m.classNames.count ? m.classNames[c] : String(c)))</td><td>\(m.support[c])</td>"
                + cell(m.precision, c) + cell(m.recall, c) + cell(m.f1, c) + (teacher == nil ? "" : cell(teacher?.f1, c)) + "</tr>"
        }
        html += "<tr class=\"summary\"><td>macro average</td><td>\(m.support.reduce(0, +))</td><td></td><td></td>"
            + "<td>\(String(format: "%.4f", m.macroF1))</td>" + (teacher.map { "<td>\(String(format: "%.4f", $0.macroF1))</td>" } ?? "") + "</tr>"
        return html + "</table>"
    }

    /// The confusion matrix as a heat map (rows: true class, columns: predicted).
    static func confusionChart(_ m: ClassificationMetrics) -> String {
        let n = m.confusion.count, cell = 30.0, left = 96.0, top = 40.0
        let peak = Double(m.confusion.flatMap { $0 }.max() ?? 1)
        var svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(left + cell * Double(n) + 20))\" height=\"\(Int(top + cell * Double(n) + 20))\">"
        svg += "<text x=\"0\" y=\"18\" font-weight=\"bold\">Confusion matrix (rows: true, columns: predicted)</text>"
        for (r, row) in m.confusion.enumerated() {
            svg += "<text x=\"\(left - 6)\" y=\"\(top + cell * Double(r) + 19)\" text-anchor=\"end\" font-size=\"10\">\(escape(r < m.classNames.count ? m.classNames[r] : String(r)))</text>"
            for (c, count) in row.enumerated() {
                let shade = Int(255 - 200 * Double(count) / max(peak, 1))
                svg += "<rect class=\"cell\" x=\"\(left + cell * Double(c))\" y=\"\(top + cell * Double(r))\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"rgb(\(shade),\(shade),255)\"/>"
                svg += "<text x=\"\(left + cell * Double(c) + cell / 2)\" y=\"\(top + cell * Double(r) + 19)\" text-anchor=\"middle\" font-size=\"9\">\(count)</text>"
            }
        }
        return svg + "</svg>"
    }

    /// Confidence against accuracy per bin, with the diagonal of perfect calibration.
    static func reliabilityChart(_ m: ClassificationMetrics) -> String {
        let size = 260.0, pad = 40.0
        var svg = "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(size + 2 * pad))\" height=\"\(Int(size + 2 * pad))\">"
        svg += "<text x=\"0\" y=\"18\" font-weight=\"bold\">Reliability (ECE \(String(format: "%.4f", m.expectedCalibrationError)))</text>"
        svg += "<line x1=\"\(pad)\" y1=\"\(pad + size)\" x2=\"\(pad + size)\" y2=\"\(pad)\" stroke=\"#999\" stroke-dasharray=\"4\"/>"
        svg += "<rect x=\"\(pad)\" y=\"\(pad)\" width=\"\(size)\" height=\"\(size)\" fill=\"none\" stroke=\"#444\"/>"
        let width = size / Double(max(m.reliability.count, 1))
        for (b, bin) in m.reliability.enumerated() where bin.count > 0 {
            svg += "<rect class=\"bar\" x=\"\(pad + Double(b) * width)\" y=\"\(pad + size * (1 - bin.accuracy))\" width=\"\(width - 1)\" height=\"\(size * bin.accuracy)\" fill=\"#1f77b4\" opacity=\"0.8\"/>"
        }
        svg += "<text x=\"\(pad + size / 2)\" y=\"\(pad + size + 28)\" text-anchor=\"middle\" font-size=\"11\">confidence</text>"
        svg += "<text x=\"12\" y=\"\(pad + size / 2)\" font-size=\"11\" transform=\"rotate(-90 12 \(pad + size / 2))\" text-anchor=\"middle\">accuracy</text>"
        return svg + "</svg>"
    }

    /// Every run side by side: a table of test accuracy (final and selected model), size and
    /// latency, and test accuracy against batch-1 latency as a scatter, for two runs or more.
    static func comparison(_ runs: [Run]) -> String {
        let evaluated = runs.compactMap { run in run.evaluation.map { (run.name, $0) } }
        guard evaluated.count >= 2 else { return "" }
        var html = "<h2>Runs compared</h2><table class=\"comparison\"><tr><th>run</th><th>test accuracy, final model</th><th>macro-F1, final model</th><th>test accuracy, selected model</th><th>parameters</th><th>size</th><th>latency, batch 1</th></tr>"
        for (name, e) in evaluated {
            html += "<tr><td>\(escape(name))</td><td>\(String(format: "%.2f%%", e.student.top1 * 100))</td><td>\(String(format: "%.4f", e.student.macroF1))</td>"
                + "<td>\(e.selected.map { String(format: "%.2f%% (epoch %d)", $0.top1 * 100, (e.selectedEpoch ?? 0) + 1) } ?? "—")</td>"
                + "<td>\(e.studentCost.parameters)</td><td>\(String(format: "%.0f KB", Double(e.studentCost.bytes) / 1024))</td>"
                + "<td>\(String(format: "%.3f ms", e.studentCost.latencyBatch1Milliseconds))</td></tr>"
        }
        func meanAndDeviation(_ values: [Double]) -> (Double, Double) {
            let mean = values.reduce(0, +) / Double(values.count)
            return (mean, (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)).squareRoot())
        }
        let (mean, deviation) = meanAndDeviation(evaluated.map { $0.1.student.top1 * 100 })
        let (meanF1, deviationF1) = meanAndDeviation(evaluated.map { $0.1.student.macroF1 })
        html += "<tr class=\"summary\"><td>mean ± std</td><td>\(String(format: "%.2f ± %.2f%%", mean, deviation))</td><td>\(String(format: "%.4f ± %.4f", meanF1, deviationF1))</td><td></td><td></td><td></td><td></td></tr>"
        html += "</table>"
        return html + lineChart(title: "Test accuracy against latency", xLabel: "latency at batch 1, ms", yLabel: "test accuracy",
                                series: evaluated.map { ($0.0, [($0.1.studentCost.latencyBatch1Milliseconds, $0.1.student.top1)]) }, markersOnly: true)
    }

    /// The whole page.
    public static func render(_ runs: [Run], title: String = "Distill report") -> String {
        var html = """
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <style>body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:12px 0}
        td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}
        .chart{margin:8px 16px 8px 0;vertical-align:top}</style></head><body><h1>\(escape(title))</h1>
        """
        html += lineChart(title: "Training loss", yLabel: "loss", series: runs.map { run in (run.name, run.epochs.map { (Double($0.epoch + 1), Double($0.loss)) }) })
        html += lineChart(title: "Validation accuracy", yLabel: "accuracy", series: runs.map { run in
            (run.name, run.epochs.compactMap { e in e.validationAccuracy.map { (Double(e.epoch + 1), $0) } })
        })
        html += comparison(runs)
        for run in runs {
            guard let e = run.evaluation else { continue }
            html += "<h2>\(escape(run.name))</h2><table><tr><th></th><th>accuracy</th><th>macro-F1</th><th>top-5</th><th>calibration error</th><th>parameters</th><th>multiply-adds</th><th>size</th><th>latency, batch 1</th><th>latency, batch 256</th><th>agreement</th></tr>"
            func row(_ name: String, _ m: ClassificationMetrics, _ c: ModelCost?, agreement: Double?) -> String {
                let cost = c.map { c in
                    "<td>\(c.parameters)</td><td>\(c.multiplyAdds)</td><td>\(String(format: "%.0f KB", Double(c.bytes) / 1024))</td><td>\(String(format: "%.3f ms", c.latencyBatch1Milliseconds))</td><td>\(String(format: "%.2f ms", c.latencyBatch256Milliseconds))</td>"
                } ?? String(repeating: "<td>—</td>", count: 5)
                return "<tr><td>\(name)</td><td>\(String(format: "%.2f%%", m.top1 * 100))</td><td>\(String(format: "%.4f", m.macroF1))</td><td>\(String(format: "%.2f%%", m.top5 * 100))</td><td>\(String(format: "%.4f", m.expectedCalibrationError))</td>" + cost + "<td>\(agreement.map { String(format: "%.2f%%", $0 * 100) } ?? "—")</td></tr>"
            }
            if let t = e.teacher, let tc = e.teacherCost { html += row("teacher", t, tc, agreement: nil) }
            html += row(e.int8 == nil ? "student" : "student, int8", e.student, e.studentCost, agreement: e.student.agreement)
            if let q = e.int8 { html += row("student, fake-quantized (as trained)", q.fakeQuantized, nil, agreement: q.fakeQuantized.agreement) }
            html += "</table>"
            if let q = e.int8 {
                html += "<p>The int8 model (\(escape(q.file)), \(q.fileBytes) bytes, \(String(format: "%.1f%%", 100 * Double(q.fileBytes) / Double(max(q.floatFileBytes, 1)))) of the float model's \(q.floatFileBytes)) "
                    + "gives the fake-quantized model's class for \(String(format: "%.2f%%", q.agreementWithFakeQuantized * 100)) of the test examples; its latency is on the \(escape(q.kernelPath)) int8 kernels, \(q.threads) threads"
                    + (q.floatLayers.isEmpty ? "." : "; layers that stay float: \(escape(q.floatLayers.joined(separator: ", "))).") + "</p>"
            }
            var bars: [(String, [Double])] = []
            if let t = e.teacher { bars.append(("teacher", t.perClassAccuracy)) }
            bars.append(("student", e.student.perClassAccuracy))
            html += barChart(title: "Per-class accuracy", classes: e.student.classNames, series: bars)
            html += perClassTable(e.student, teacher: e.teacher)
            html += confusionChart(e.student) + reliabilityChart(e.student)
        }
        return html + "</body></html>\n"
    }

    /// Renders `runs` and writes the page to `path` atomically.
    public static func write(_ runs: [Run], to path: String, title: String = "Distill report") throws {
        try AtomicFile.write(Data(render(runs, title: title).utf8), to: path)
    }
}
