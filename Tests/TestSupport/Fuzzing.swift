import Foundation
import Tensors

/// A seeded mutation fuzzer: each input is one of `seeds` with 1-8 random mutations (bit
/// flips, interesting bytes, 32-bit overwrites with huge or negative numbers, insertions,
/// deletions, truncation, duplicated chunks). `body` parses the input; thrown errors are the
/// expected outcome, while a trap or crash ends the test process (and fails CI).
///
/// Iterations default to 100,000 in release builds (make test) and 2,000 in debug builds;
/// DISTILL_FUZZ_ITERATIONS overrides both. Returns how many inputs were accepted.
@discardableResult
public func fuzz(seeds: [Data], iterations: Int? = nil, seed: UInt64 = 0, _ body: (Data) throws -> Void) -> (inputs: Int, accepted: Int) {
    #if DEBUG
    let fallback = 2_000
    #else
    let fallback = 100_000
    #endif
    let count = iterations ?? ProcessInfo.processInfo.environment["DISTILL_FUZZ_ITERATIONS"].flatMap(Int.init) ?? fallback
    var generator = RandomGenerator(seed: seed)
    var accepted = 0
    let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x2C, 0x22, 0x0A]
    let words: [UInt32] = [0, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0x0010_0000, 0xFFFF]
    for _ in 0..<count {
        var bytes = [UInt8](seeds[Int(generator.next() % UInt64(seeds.count))])
        for _ in 0..<(1 + Int(generator.next() % 8)) {
            let position = bytes.isEmpty ? 0 : Int(generator.next() % UInt64(bytes.count))
            switch generator.next() % 8 {
            case 0 where !bytes.isEmpty: bytes[position] ^= UInt8(1) << UInt8(generator.next() % 8)
            case 1 where !bytes.isEmpty: bytes[position] = interesting[Int(generator.next() % UInt64(interesting.count))]
            case 2 where bytes.count >= 4:
                let word = words[Int(generator.next() % UInt64(words.count))]
                let at = min(position, bytes.count - 4)
                for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt32(generator.next() % 2 == 0 ? k : 3 - k))) }
            case 3: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: position)
            case 4 where !bytes.isEmpty: bytes.remove(at: position)
            case 5: bytes = Array(bytes.prefix(position))
            case 6 where bytes.count > 2:
                let length = 1 + Int(generator.next() % UInt64(min(64, bytes.count - position)))
                bytes.insert(contentsOf: bytes[position..<(position + length)], at: position)
            default: if !bytes.isEmpty { bytes[position] = bytes[position] &+ UInt8(truncatingIfNeeded: generator.next() % 5) &- 2 }
            }
        }
        if (try? body(Data(bytes))) != nil { accepted += 1 }
    }
    return (count, accepted)
}
