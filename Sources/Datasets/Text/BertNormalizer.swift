import Foundation

/// BERT's text normaliser, as Hugging Face `tokenizers` defines its `BertNormalizer`: applied
/// to the text before it is cut into words. Each step works on Unicode scalars (what Rust calls
/// `char`), never on Swift's grapheme clusters, so lengths and matches are the reference's.
///
/// In order: cleaning (drop NUL, U+FFFD, and control, format and private-use characters other
/// than tab and line breaks; every whitespace character becomes a space), spaces around CJK
/// ideographs (so each is a word of its own), accent stripping (canonical decomposition, NFD,
/// then dropping non-spacing marks), and lower-casing (each scalar's full lower-case mapping, without
/// context: a final Σ becomes σ).
public struct BertNormalizer: Equatable, Sendable {
    public var cleanText: Bool
    public var handleChineseCharacters: Bool
    public var stripAccents: Bool
    public var lowercase: Bool

    /// BERT uncased's settings by default. `stripAccents` nil follows `lowercase`, as in
    /// tokenizer.json's `"strip_accents": null`.
    public init(cleanText: Bool = true, handleChineseCharacters: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseCharacters = handleChineseCharacters
        self.stripAccents = stripAccents ?? lowercase
        self.lowercase = lowercase
    }

    /// The normalised scalars of `text`.
    public func normalize(_ text: some Sequence<Unicode.Scalar>) -> [Unicode.Scalar] {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(text.underestimatedCount)
        for scalar in text {
            // ASCII, most text, without Unicode property look-ups: C0 controls and DEL are
            // dropped, tab, line feed, carriage return and space become spaces.
            if cleanText && scalar.value < 0x80 {
                switch scalar.value {
                case 0x09, 0x0A, 0x0D, 0x20: scalars.append(" ")
                case 0..<0x20, 0x7F: break
                default: scalars.append(scalar)
                }
                continue
            }
            if cleanText {
                if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { continue }
                if Self.isWhitespace(scalar) {
                    scalars.append(" ")
                    continue
                }
            }
            if handleChineseCharacters && Self.isChineseCharacter(scalar) {
                scalars.append(contentsOf: [" ", scalar, " "])
            } else {
                scalars.append(scalar)
            }
        }
        if stripAccents && scalars.contains(where: { $0.value >= 0x80 }) {
            let decomposed = String(String.UnicodeScalarView(scalars)).decomposedStringWithCanonicalMapping
            scalars = decomposed.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
        }
        if lowercase {
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(scalars.count)
            for scalar in scalars {
                if scalar.isASCII {
                    lowered.append(scalar.value >= 0x41 && scalar.value <= 0x5A ? Unicode.Scalar(scalar.value + 32)! : scalar)
                } else {
                    lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
                }
            }
            scalars = lowered
        }
        return scalars
    }

    /// Tab, line feed and carriage return count as whitespace, not control characters.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar.properties.isWhitespace
    }

    /// Control, format, private use and surrogate characters. Unassigned code points stay, as
    /// they do in the reference (its tables list none), so the answer does not change with the
    /// Unicode version of the platform.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        switch scalar.properties.generalCategory {
        case .control, .format, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// The CJK Unified Ideographs blocks and their extensions and compatibility blocks, as the
    /// reference lists them (its extension C/D range starts at U+2B920, not U+2B820).
    static func isChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}

/// BERT's pre-tokenizer (`BertPreTokenizer`): words are separated by whitespace, which is
/// dropped, and every punctuation character is a word of its own. Punctuation is ASCII
/// punctuation (so `$ + < = > ^ ` | ~` too) and every Unicode punctuation category (P*).
public enum BertPreTokenizer {
    /// The words of normalised text, each as its scalars.
    public static func words(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for (index, scalar) in scalars.enumerated() {
            if isWhitespace(scalar) {
                if start < index { words.append(scalars[start..<index]) }
                start = index + 1
            } else if isPunctuation(scalar) {
                if start < index { words.append(scalars[start..<index]) }
                words.append(scalars[index...index])
                start = index + 1
            }
        }
        if start < scalars.count { words.append(scalars[start...]) }
        return words
    }

    /// The White_Space property (ASCII's are tab to carriage return, and space).
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x80 ? (scalar.value == 0x20 || (0x09...0x0D).contains(scalar.value)) : scalar.properties.isWhitespace
    }

    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E: return true
        case 0..<0x80: return false
        default: break
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }
}
