import Datasets
import DistillInference
import NeuralNet
import Tensors

/// A model fed through an input conversion: a teacher from another project whose
/// preprocessing (size, normalisation, channel order) differs from the student's sees each
/// batch converted to its own (`Preprocessing.conversion(from:)`), while the student's data
/// pipeline stays one. Parameters, buffers and tappable layers are the wrapped model's, by
/// the same names; the conversion's statistics join its buffers so that teacher caches
/// written for another conversion are never reused.
public final class AdaptedModel: Module {
    public let model: any Module
    public let conversion: InputConversion
    public let state = ModuleState()
    private let conversionRecord: Tensor

    public init(_ model: any Module, conversion: InputConversion) {
        self.model = model
        self.conversion = conversion
        let (s, t) = (conversion.source, conversion.target)
        conversionRecord = Tensor(s.normalization.mean + s.normalization.standardDeviation + t.normalization.mean + t.normalization.standardDeviation
                                  + [s.channels, s.height, s.width, t.channels, t.height, t.width].map(Float.init)
                                  + [s.channelOrder == .bgr ? 1 : 0, t.channelOrder == .bgr ? 1 : 0],
                                  shape: [s.normalization.mean.count * 2 + t.normalization.mean.count * 2 + 8])
    }

    /// [B, source example] → the wrapped model's output on the converted batch.
    public func forward(_ input: Tensor) -> Tensor { model.forward(withoutGradients { conversion(input) }) }

    public var children: [(name: String, module: any Module)] { model.children }
    public var localParameters: [(name: String, tensor: Tensor)] { model.localParameters }
    public var localBuffers: [(name: String, tensor: Tensor)] { model.localBuffers + [("distill_input_conversion", conversionRecord)] }
}
