// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Distill",
    products: [
        .library(name: "Tensors", targets: ["Tensors"]),
        .library(name: "NeuralNet", targets: ["NeuralNet"]),
        .library(name: "Training", targets: ["Training"]),
        // For apps that embed a trained student: loads a float or int8 model file with its
        // preprocessing and predicts; no training code, YAML, ONNX, image decoding or MPI.
        .library(name: "DistillInference", targets: ["DistillInference"]),
        .library(name: "Datasets", targets: ["Datasets"]),
        .library(name: "ModelFormats", targets: ["ModelFormats"]),
        .library(name: "Distillation", targets: ["Distillation"]),
        .executable(name: "distill", targets: ["DistillCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // The GEMM shim: oneDNN's sgemm on Linux (libdnnl-dev), Accelerate on Apple
        // platforms. The header also carries the flush-to-zero switch, which Swift cannot
        // express directly. See Sources/CBLAS/shim.h for why not OpenBLAS.
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            providers: [.apt(["libdnnl-dev"])]
        ),
        // MPI for data-parallel training (Open MPI or MPICH); only the `distill` command links
        // it, through DistillMPI, so the library products never need MPI installed.
        .systemLibrary(
            name: "CMPI",
            path: "Sources/CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Vector kernels in C: each compiled per instruction set with per-function target
        // attributes and chosen at run time from the CPU (Sources/CKernels/include/CKernels.h);
        // no build-time -march, so the package builds for and runs on any x86-64 or ARM CPU.
        // It also carries the convolution primitives' glue (convolution.c), which links oneDNN on Linux.
        .target(name: "CKernels", linkerSettings: [.linkedLibrary("dnnl", .when(platforms: [.linux]))]),
        .target(
            name: "Tensors",
            dependencies: ["CBLAS", "CKernels"],
            linkerSettings: [
                .linkedLibrary("dnnl", .when(platforms: [.linux])),
                .linkedLibrary("gomp", .when(platforms: [.linux])),
                .linkedFramework("Accelerate", .when(platforms: [.macOS, .iOS])),
            ]
        ),
        // Layers, modules, the model zoo and the int8 runtime: what running a model needs.
        .target(name: "NeuralNet", dependencies: ["Tensors"]),
        // What only training needs: optimizers, schedules, losses, quantization-aware training.
        .target(name: "Training", dependencies: ["Tensors", "NeuralNet"]),
        // The inference-only library: reading model files (safetensors, Distill's float and
        // int8 model files), the preprocessing they record, and `InferenceModel`. Writers live
        // in ModelFormats, input files (images, NPY, CSV) in Datasets.
        .target(name: "DistillInference", dependencies: ["Tensors", "NeuralNet"]),
        // PNG and JPEG decoding through libpng and libjpeg-turbo; C for libjpeg's
        // setjmp-based error handling, which Swift cannot express.
        .target(
            name: "CImage",
            linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]
        ),
        .target(name: "Datasets", dependencies: ["Tensors", "DistillInference", "CZlib", "CImage"]),
        // The served teacher's HTTP(S) transport on libcurl (libcurl4-openssl-dev on Linux):
        // C because curl_easy_setopt is variadic. URLSession on Linux cannot be told which
        // certificate authority to trust, nor to stop reading a body at a limit.
        .target(name: "CHTTP", linkerSettings: [.linkedLibrary("curl")]),
        .target(name: "ModelFormats", dependencies: ["Tensors", "NeuralNet", "Training", "DistillInference"]),
        .target(name: "Distillation", dependencies: ["Tensors", "NeuralNet", "Training", "DistillInference", "Datasets", "ModelFormats", "CHTTP"]),
        .target(name: "DistillMPI", dependencies: ["CMPI", "Tensors"]),
        .executableTarget(
            name: "DistillCLI",
            dependencies: [
                "Tensors", "NeuralNet", "Training", "DistillInference", "Datasets", "ModelFormats", "Distillation", "DistillMPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "DistillBench",
            dependencies: ["Tensors", "NeuralNet", "Training", "DistillInference", "Datasets", "ModelFormats", "Distillation"],
            path: "bench/DistillBench"
        ),
        // An app's use of the inference-only library, and what its binary weighs
        // (docs/quantization.md): it must depend on DistillInference alone.
        .executableTarget(name: "distill-predict-example", dependencies: ["DistillInference"], path: "Examples/PredictExample"),
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CKernels", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets", "DistillInference", "Tensors", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet", "Training", "Tensors", "Datasets", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "DistillationTests", dependencies: ["Distillation", "NeuralNet", "Training", "DistillInference", "Tensors", "Datasets", "ModelFormats", "TestSupport"], exclude: ["Fixtures"]),
        // The CLI tests run the built binary; ModelFormats and Datasets read what it writes.
        .testTarget(name: "DistillCLITests", dependencies: ["TestSupport", "ModelFormats", "DistillInference", "NeuralNet", "Datasets", "Tensors"]),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "NeuralNet", "Training", "DistillInference", "Tensors", "Datasets", "TestSupport"], exclude: ["Fixtures"]),
        // The inference library's tests: ModelFormats only writes the models they read back.
        .testTarget(name: "DistillInferenceTests", dependencies: ["DistillInference", "NeuralNet", "Tensors", "ModelFormats", "TestSupport"]),
    ]
)
