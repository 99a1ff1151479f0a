/// The cosine similarity of two vectors and their largest absolute difference: how the tests
/// compare an embedding of ours with a reference one.
public func cosineAndLargestDifference<A: Sequence, B: Sequence>(_ ours: A, _ theirs: B) -> (cosine: Float, largestDifference: Float)
    where A.Element == Float, B.Element == Float {
    var dot: Float = 0, a: Float = 0, b: Float = 0, largest: Float = 0
    for (x, y) in zip(ours, theirs) {
        dot += x * y
        a += x * x
        b += y * y
        largest = max(largest, abs(x - y))
    }
    return (dot / (a * b).squareRoot(), largest)
}
