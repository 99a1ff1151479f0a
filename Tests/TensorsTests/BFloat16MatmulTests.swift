import Tensors
import TestSupport
import XCTest

/// Matrix products in bfloat16 (`Compute.matmulPrecision`): operands rounded to bfloat16,
/// sums in float32. Checked against float32 products of the rounded operands, which they
/// equal up to the order of the sums.
final class BFloat16MatmulTests: XCTestCase {
    override func tearDown() {
        Compute.threadCount = ProcessInfo.processInfo.activeProcessorCount
    }

    /// x rounded to the nearest bfloat16 (ties to even), as float32.
    private func rounded(_ t: Tensor, grad: Bool = false) -> Tensor {
        Tensor(t.scalars.map { x in
            let u = x.bitPattern
            return Float(bitPattern: ((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16) << 16)
        }, shape: t.shape, requiresGrad: grad)
    }

    /// A linear layer's output and its input and weight gradients (all three products above
    /// 2²⁰ multiply-adds) at one and two threads.
    func testLinearForwardAndBackwardAreFloat32SumsOfRoundedOperands() throws {
        guard MatmulPrecision.bfloat16.isSupported else { throw XCTSkip("no bfloat16 matmul on this CPU") }
        print("bfloat16 matmul: \(MatmulPrecision.bfloat16Implementation ?? "none")")
        for threads in [1, 2] {
            Compute.threadCount = threads
            let x = randomLeaf([96, 320], seed: 1), w = randomLeaf([272, 320], seed: 2, scale: 0.1), b = randomLeaf([272], seed: 3)
            let upstream = randomLeaf([96, 272], seed: 4).detached()
            let y = Compute.withMatmulPrecision(.bfloat16) { () -> Tensor in
                let y = Tensor.linear(x, weight: w, bias: b)
                (y * upstream).sum().backward()
                return y.detached()
            }
            XCTAssertEqual(Compute.matmulPrecision, .float32, "restored after the block")
            let rx = rounded(x, grad: true), rw = rounded(w, grad: true), rg = rounded(upstream)
            let reference = Tensor.linear(rx, weight: rw, bias: b)
            (reference * rg).sum().backward()
            assertClose(y.scalars, reference.scalars, absolute: 1e-4, relative: 1e-4, "output, \(threads) threads")
            assertClose(x.grad!.scalars, rx.grad!.scalars, absolute: 1e-4, relative: 1e-4, "input gradient, \(threads) threads")
            assertClose(w.grad!.scalars, rw.grad!.scalars, absolute: 1e-4, relative: 1e-4, "weight gradient, \(threads) threads")
            // And they are not float32 products: the rounding shows.
            let exact = withoutGradients { Tensor.linear(x, weight: w, bias: b) }
            let largest = zip(exact.scalars, y.scalars).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(largest, 1e-3, "bfloat16 operands differ from float32 ones")
        }
    }

    /// Many shapes in turn, then the first ones again (each shape's primitive is made once
    /// and found again in the shared cache): each product is the one its shape asks for.
    func testManyShapesEachGiveTheirOwnProduct() throws {
        guard MatmulPrecision.bfloat16.isSupported else { throw XCTSkip("no bfloat16 matmul on this CPU") }
        let w = randomLeaf([384, 96], seed: 7).detached()
        let lengths = Array(stride(from: 64, through: 424, by: 9)) // 2²⁰ multiply-adds and more in each thread's rows
        for length in lengths + lengths.prefix(5) {
            let x = randomLeaf([length, 384], seed: UInt64(length)).detached()
            let y = Compute.withMatmulPrecision(.bfloat16) { x.matmul(w) }
            XCTAssertEqual(y.shape, [length, 96])
            assertClose(y.scalars, rounded(x).matmul(rounded(w)).scalars, absolute: 1e-4, relative: 1e-4, "\(length) rows")
        }
    }

    /// Products under 2²⁰ multiply-adds stay float32, bit for bit.
    func testSmallProductsStayFloat32() throws {
        guard MatmulPrecision.bfloat16.isSupported else { throw XCTSkip("no bfloat16 matmul on this CPU") }
        let a = randomLeaf([32, 48], seed: 5).detached(), b = randomLeaf([48, 40], seed: 6).detached()
        let plain = a.matmul(b)
        let inBFloat16 = Compute.withMatmulPrecision(.bfloat16) { a.matmul(b) }
        XCTAssertEqual(plain.scalars, inBFloat16.scalars)
    }
}
