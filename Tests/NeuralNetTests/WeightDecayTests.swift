import NeuralNet
import Tensors
import Training
import XCTest

/// Which parameters weight decay applies to (`ParameterGroup.decayedParameters`): not biases,
/// norms or embedding tables, whose rows Adam's L2 form would otherwise pull to zero in every
/// step their token is absent.
final class WeightDecayTests: XCTestCase {
    func testEmbeddingTablesBiasesAndNormsAreNotDecayed() {
        var generator = RandomGenerator(seed: 1)
        let bag = BagOfEmbeddings(vocabularySize: 10, dimension: 4, outputs: 3, paddingId: 0, using: &generator)
        let decayed = ParameterGroup.decayedParameters(of: bag)
        XCTAssertEqual(decayed, [ObjectIdentifier(bag.projection.weight)])
        let groups = ParameterGroup.decayingWeightsOnly(bag, learningRate: 0.01, weightDecay: 0.1)
        XCTAssertEqual(groups.map { $0.parameters.count }, [1, 2])
        XCTAssertEqual(groups.map(\.weightDecay), [0.1, 0])
        XCTAssertTrue(groups[1].parameters.contains { $0 === bag.embeddings.weight })

        let bert = BertModel(BertConfiguration(vocabularySize: 12, hiddenSize: 8, layers: 1, heads: 2, intermediateSize: 16, maxPositions: 6),
                             using: &generator)
        let tables = [bert.embeddings.wordEmbeddings.weight, bert.embeddings.positionEmbeddings.weight, bert.embeddings.tokenTypeEmbeddings.weight]
        let decayedBert = ParameterGroup.decayedParameters(of: bert)
        XCTAssertFalse(tables.contains { decayedBert.contains(ObjectIdentifier($0)) })
        XCTAssertEqual(decayedBert.count, bert.parameters.filter { $0.rank >= 2 }.count - 3, "every other matrix decays")
    }

    /// Adam with L2 decay on a table would move the row of a token that is not in the batch by
    /// about the learning rate; exempt, the row stays where it is.
    func testAdamLeavesTheRowsOfAbsentTokensAlone() throws {
        var generator = RandomGenerator(seed: 2)
        let bag = BagOfEmbeddings(vocabularySize: 10, dimension: 4, outputs: 3, paddingId: 0, using: &generator)
        let before = bag.embeddings.weight.scalars
        let adam = Adam(ParameterGroup.decayingWeightsOnly(bag, learningRate: 0.01, weightDecay: 0.5))
        for _ in 0..<3 {
            let output = try bag.embed(TokenBatch(sequences: [[1, 2, 3]]))
            adam.zeroGrad()
            output.sum().backward()
            adam.step()
        }
        let after = bag.embeddings.weight.scalars
        XCTAssertEqual(Array(after[(5 * 4)..<(10 * 4)]), Array(before[(5 * 4)..<(10 * 4)]), "rows 5-9 were never in a batch")
        XCTAssertNotEqual(Array(after[4..<8]), Array(before[4..<8]), "row 1 learned")
    }
}
