import Datasets
import Distillation
import NeuralNet
import Tensors
import Training

/// Every option of the training commands, declared once: name, kind, range, help. Defaults
/// live in `TrainingDefaults` (shared) or beside the `@Option` that uses them (one command's own).
enum Spec {
    // Data.
    static let data = OptionSpec("data", .text, "Your data: a folder of Fashion-MNIST IDX files (the default); a folder of PNG/JPEG images in one subfolder per class, or with train/ and test/ (and optionally val/) folders of them inside; an .npz archive of inputs and labels; an .npy inputs file (with --labels LABELS.npy); or a .csv table. For a text model: labelled texts, as a folder of class files (cut by --text-separator), a folder of class folders, or a .csv/.tsv table or .jsonl with a label.")
    static let testData = OptionSpec("test-data", .text, "The test set, of the same kind as --data (an .npz archive, a .csv table, or labelled texts of the training classes), for data without one of its own.")
    static let testFraction = OptionSpec("test-fraction", .number(0.01...0.9), "Fraction of each class held out as the test set (stratified, seeded) for data without a test set of its own. Default \(UserData.defaultTestFraction).")
    static let imageSize = OptionSpec("image-size", .text, "Image folders: resize every image to this size, a side (32) or HEIGHTxWIDTH (48x192), sides 1 to 4096; default: the images' own size, which must then agree.")
    static let channels = OptionSpec("channels", .integer(1...3), "Image folders: 1 (grayscale) or 3 (RGB, the default).")
    static let inputs = OptionSpec("inputs", .text, "NPZ data: the inputs array's name (default: the first of inputs, x, X, images, features, data).")
    static let labels = OptionSpec("labels", .text, "NPZ data: the labels array's name (default: labels, y, Y or targets); CSV: the label column, a name or a 0-based index (default: the last); NPY: the labels file.")
    static let classes = OptionSpec("classes", .numbers(values: 0...9_999, maximumCount: 10_000), "Classes to use, relabelled from 0: a range '5-9' or a list '0,2,4'.")
    static let labelsPerClass = OptionSpec("labels-per-class", .integer(1...1_000_000), "Keep labels for only this many training images per class (seeded); the rest stay unlabelled.")
    static let validationFraction = OptionSpec("validation-fraction", .number(0...0.9),
        "Fraction of each class's labelled training examples held out to select the checkpoint (stratified, seeded); 0: none. Default \(TrainingDefaults.validationFraction), or none below \(TrainingDefaults.minimumLabelsPerClassForValidation) labels per class.")

    // Text data (a text teacher: a folder with model.safetensors and tokenizer.json).
    static let textSeparator = OptionSpec("text-separator", .text, "Text data: the line that separates texts in a text file or a folder of class files (% for fortunes); default: one text a line.")
    static let textColumn = OptionSpec("text-column", .text, "Text data: the column of a CSV or TSV table, or the key of JSON lines, holding the text (default: text).")
    static let tokenizer = OptionSpec("tokenizer", .text, "Text models (train --model text-bag or text-transformer): the tokenizer.json that cuts the texts into ids, or a folder holding one (a teacher's, such as all-MiniLM-L6-v2's); the run folder keeps a copy.")
    static let minClassSize = OptionSpec("min-class-size", .integer(1...100_000_000), "Labelled text data: keep only the classes with at least this many texts (the fortunes topics: 140); fewer than 2 left is an error.")
    static let maxTokens = OptionSpec("max-tokens", .integer(3...8_192), "Text data: tokens kept per text, special tokens included (default: the tokenizer.json's truncation, else 128).")
    static let layers = OptionSpec("layers", .integer(1...48), "text-transformer: encoder layers (default 3).")
    static let heads = OptionSpec("heads", .integer(1...64), "text-transformer: attention heads, dividing --hidden (default: the teacher's with --init-from-teacher, else --hidden ÷ 64).")
    static let feedForward = OptionSpec("feed-forward", .integer(1...16_384), "text-transformer: the width of each layer's feed-forward block (default 4 × --hidden, or the teacher's with --init-from-teacher). With --init-from-teacher a narrower block keeps the teacher's neurons with the largest weights (docs/text.md measures students of MiniLM's width).")
    static let dropout = OptionSpec("dropout", .number(0...0.9), "text-transformer: the dropout rate of its hidden states and attention weights in training (default 0.1, BERT's). A student distilled from its teacher's layers learns better without it (--dropout 0; docs/text.md).")
    static let initFromTeacher = OptionSpec("init-from-teacher", .flag, "text-transformer: start from the teacher's embeddings and every k-th of its layers from the first (k = teacher layers ÷ --layers); the hidden size and heads default to the teacher's and must equal them, the feed-forward block may be narrower.")
    static let initLayers = OptionSpec("init-layers", .numbers(values: 0...47, maximumCount: 48), "text-transformer, with --init-from-teacher: the teacher's layers the student starts from, one per student layer in order, counted from 0 (0,5: MiniLM's first and last); sets --layers. Default: every k-th from the first.")
    static let hiddenWeight = OptionSpec("hidden-weight", .number(0...1e6), "text-transformer: weight of hidden-state transfer (TinyBERT): the mean squared error between each student layer's outputs, through a learned linear map when the widths differ, and its teacher layer's, over real tokens. Default 0: off. The teacher then runs online.")
    static let attentionWeight = OptionSpec("attention-weight", .number(0...1e6), "text-transformer: weight of attention-distribution transfer (MiniLM): KL(teacher ‖ student) between the attention of each student layer and its teacher layer, per head and real query; needs equal head counts. Default 0: off. The teacher then runs online.")
    static let layerMap = OptionSpec("layer-map", .text, "text-transformer, with --hidden-weight or --attention-weight: which teacher layer each student layer learns from, STUDENT:TEACHER pairs from 0 (0:1,1:3,2:5); student layers left out learn from none. Default: student layer i from teacher layer (i+1)·teacher ÷ student − 1, the last from the last (TinyBERT's).")

    // Training.
    static let epochs = OptionSpec("epochs", .integer(1...100_000), "Training epochs.")
    static let batch = OptionSpec("batch", .integer(1...65_536), "Batch size.")
    static let lr = OptionSpec("lr", .positive(upTo: 10), "Peak learning rate.")
    static let seed = OptionSpec("seed", .integer(0...Int(Int32.max)), "Random seed (weights, data order, label choice, validation split).")
    static let optimizer = OptionSpec("optimizer", .choice(OptimizerChoice.allCases.map(\.rawValue)), "Optimizer (sgd has Nesterov momentum \(TrainingDefaults.momentum)).")
    static let schedule = OptionSpec("schedule", .choice(ScheduleChoice.allCases.map(\.rawValue)), "Learning-rate schedule after the warm-up.")
    static let weightDecay = OptionSpec("weight-decay", .number(0...1), "Weight decay on weights (not biases, normalisation parameters or embedding tables).")
    static let clipNorm = OptionSpec("clip-norm", .number(0...1e6), "Clip gradients to this global norm; 0: no clipping.")
    static let warmupSteps = OptionSpec("warmup-steps", .integer(0...10_000_000), "Linear learning-rate warm-up steps (at most a tenth of the run).")
    static let onNonFinite = OptionSpec("on-nonfinite", .choice(["stop", "rollback"]), "When a loss or gradient is NaN or infinite: 'stop' with an error, or 'rollback' to the epoch's start at half the learning rate (3 times at most).")
    static let matmulPrecision = OptionSpec("matmul-precision", .choice(MatmulPrecision.allCases.map(\.rawValue)),
        "Arithmetic of the training steps' matrix products: float32, or bfloat16 (operands rounded to bfloat16, sums in float32, as PyTorch's bfloat16 autocast; weights, validation and saved models stay float32). bfloat16 needs a CPU with AVX-512 and is fast with AMX or AVX512-BF16; convolutions stay float32.")
    static let classWeights = OptionSpec("class-weights", .positiveNumbers(upTo: 1e6, or: ["balanced"]),
        "Weights of the classes in the hard-label cross-entropy, for imbalanced data: 'balanced' (n / (classes · n_c), counted on the labelled training split) or one number per class after --classes, comma-separated. Distillation terms are not weighted.")
    static let patience = OptionSpec("patience", .integer(1...100_000), "Stop when validation accuracy has not improved for this many epochs (default: never).")
    static let noSyncBatchNorm = OptionSpec("no-sync-batch-norm", .flag, "Data-parallel runs (started by mpirun): batch norm uses each process's part of the batch instead of the whole global batch's statistics (synchronised batch norm, the default, trains as one process would).")
    static let noOverlapAllReduce = OptionSpec("no-overlap-all-reduce", .flag, "Data-parallel runs: sum the gradients over the processes after backward instead of during it (the default starts each 1 MiB bucket as soon as backward has completed it); for measuring what the overlap hides. Does not change the numbers.")
    static let deterministic = OptionSpec("deterministic", .integer(1...65_536), "Bit-identical data parallelism: cut each global batch into this many parts, compute each part's gradient alone and add them in part order, so that any number of processes dividing it (one included) ends with the same weights bit for bit at the same --threads. Batch norm then uses each part's own statistics; slower than the default (no overlap, parts one after another).")
    static let skipBadFiles = OptionSpec("skip-bad-files", .flag, "Drop an image that cannot be read from its batch, name it and count it, instead of stopping the run (the default stops, naming the file; the last checkpoint stays valid).")
    static let checkpointEvery = OptionSpec("checkpoint-every", .integer(1...100_000_000), "Also checkpoint every this many steps inside an epoch (default: at the end of each epoch).")
    static let out = OptionSpec("out", .text, "Run folder to write (config, metrics, checkpoint, models, report).")
    static let resume = OptionSpec("resume", .text, "Continue the run in this folder from its last checkpoint, with its config.yaml (only --quiet, --json, --checkpoint-every, --threads may be added).")
    static let dryRun = OptionSpec("dry-run", .flag, "Check the options and exit without reading data or models.")

    // Output.
    static let quiet = OptionSpec("quiet", .flag, "Print only the final result line (errors still go to standard error).")
    static let json = OptionSpec("json", .flag, "Print one JSON object a line (steps, epochs, checkpoints, then the result) instead of text, for machines.")
    static let threads = OptionSpec("threads", .integer(1...1_024), "Compute threads of this process. Default: every core, or cores ÷ processes on this machine when started by mpirun. A resumed run may set it; results then match an uninterrupted run to rounding (summation order follows the thread count), bit for bit only at the same count.")

    // Models and distillation.
    static let model = OptionSpec("model", .choice(ModelZoo.names + ModelZoo.textNames), "Zoo model: \(ModelZoo.names.joined(separator: ", ")); for texts (with --tokenizer) \(ModelZoo.textNames.joined(separator: ", ")), classifiers of the data's classes.")
    static let teacher = OptionSpec("teacher", .repeated, "Teacher: a run folder, a .safetensors file, an ONNX classifier (.onnx), a text model (a folder with tokenizer.json and model.safetensors or model.onnx, or an .onnx file with tokenizer.json beside it: a sentence encoder, taught with --method embedding, or a text classifier run, taught with kd) or a served model, http(s)://HOST:PORT/v2/models/NAME (Open Inference Protocol); repeat for an ensemble.")
    static let teacherArchitecture = OptionSpec("teacher-architecture", .choice(ModelZoo.names), "Zoo architecture of teacher .safetensors files that do not name one (PyTorch state dicts).")
    static let teacherHint = OptionSpec("teacher-hint", .text, "Teacher layer for the FitNets hint (a module path, or an ONNX node's output name); default: the zoo teacher's.")
    static let teacherAttention = OptionSpec("teacher-attention", .repeated, "Teacher layers for attention transfer, shallow to deep (repeatable); default: the zoo teacher's.")
    static let teacherEmbedding = OptionSpec("teacher-embedding", .text, "Teacher layer giving the embedding for rkd, sp, pkt and crd; default: the zoo teacher's.")
    // Served teachers (--teacher http://HOST:PORT/v2/models/NAME).
    static let queryBatch = OptionSpec("query-batch", .integer(1...65_536), "Served teachers: examples per request. Default \(ServedTeacher.defaultQueryBatch).")
    static let concurrency = OptionSpec("concurrency", .integer(1...256), "Served teachers: requests in flight at once. Default \(ServedTeacher.defaultConcurrency).")
    static let requestsPerSecond = OptionSpec("requests-per-second", .number(0...1_000_000), "Served teachers: requests started per second at most; 0: unlimited (the default).")
    static let maxQueries = OptionSpec("max-queries", .integer(1...1_000_000_000), "Served teachers: examples this run may ask about at most (answers kept from earlier runs cost nothing); the run stops with an error when more are needed.")
    static let queryTimeout = OptionSpec("query-timeout", .number(1...3_600), "Served teachers: seconds one request may take before it is retried. Default \(OptionKind.format(ServedTeacher.defaultTimeout)).")
    static let teacherTokenEnv = OptionSpec("teacher-token-env", .text, "Served teachers: the environment variable holding a bearer token, sent to the teacher's host only and never written anywhere.")
    static let teacherTokenFile = OptionSpec("teacher-token-file", .text, "Served teachers: a file holding a bearer token, sent to the teacher's host only and never written anywhere.")
    static let teacherCAFile = OptionSpec("teacher-ca-file", .text, "Served teachers over https: a file of PEM certificates, the only certificate authorities trusted for the teacher (instead of the system's store); a certificate they do not vouch for stops the run.")
    static let teacherAnswers = OptionSpec("teacher-answers", .text, "Served teachers: what the server answers: logits, probabilities (softmax outputs), top-K (the K most probable classes by the classification extension, K ≥ 1; the rest of the mass spread evenly over the other classes) or label (the class only: a one-hot target). Default: label for an integer or BYTES output of one value per example, else logits (probabilities when every answer is one).")
    static let teacherOutputs = OptionSpec("teacher-outputs", .text, "Black-box teacher outputs: an .npy of [training images, classes] logits or probabilities.")
    static let width = OptionSpec("width", .positive(upTo: 16), "Channel width multiplier of the zoo model (1: the published widths).")
    static let hidden = OptionSpec("hidden", .text, "Hidden layer sizes of mlp, comma-separated (256,128), each 1 to 65536, at most 16 layers; for text-bag its token-vector size (default 256).")
    // Teachers' preprocessing: for teachers that record none (ONNX files from other projects; a Distill run's teacher carries its own
    // record, which these do not change); given once for all, or once per --teacher in order.
    static let teacherInputSize = OptionSpec("teacher-input-size", .repeated, "Input size a teacher takes, a side (224) or HEIGHTxWIDTH (48x192), sides 1 to 4096: it sees the student's images resized (default: the data's size). Once for all teachers or once per --teacher.")
    static let teacherMean = OptionSpec("teacher-mean", .repeated, "Per-channel mean a teacher's inputs are normalised with, 1 or 3 comma-separated values for pixels in [0, 1], each -1000 to 1000 (default: the student's). Once for all teachers or once per --teacher.")
    static let teacherStd = OptionSpec("teacher-std", .repeated, "Per-channel standard deviation for a teacher's inputs, 1 or 3 comma-separated values above 0, at most 1000 (default: the student's). Once for all teachers or once per --teacher.")
    static let teacherChannelOrder = OptionSpec("teacher-channel-order", .repeated, "Colour order a teacher expects: rgb (the default) or bgr. Once for all teachers or once per --teacher.")
    static let student = OptionSpec("student", .choice(ModelZoo.names + ModelZoo.textNames), "Student zoo model: \(ModelZoo.names.joined(separator: ", ")); for a text teacher \(ModelZoo.textNames.joined(separator: ", ")).")
    static let method = OptionSpec("method", .choices(DistillationMethod.allCases.map(\.rawValue)), "Methods, comma-separated: \(DistillationMethod.allCases.map(\.rawValue).joined(separator: ", ")).")
    static let temperature = OptionSpec("temperature", .positive(upTo: 100), "Softmax temperature for kd and dkd.")
    static let alpha = OptionSpec("alpha", .number(0...1), "KD's α: kd weight α, cross-entropy weight 1 − α.")
    static let weight = OptionSpec("weight", .weights(DistillationMethod.allCases.map(\.rawValue)), "Override a method's weight: METHOD=W (repeatable).")
    static let unlabeled = OptionSpec("unlabeled", .flag, "Use no labels at all: the student learns from the teacher's outputs alone.")
    static let plain = OptionSpec("plain", .flag, "Turn off gradient clipping and learning-rate warm-up (the plain recipe).")
    static let augment = OptionSpec("augment", .flag, "Augment training images (random crop with 2-pixel padding, random erasing); the teacher then runs online.")
    static let cacheDirectory = OptionSpec("cache-directory", .text, "Folder where teacher outputs are cached between runs (keyed by teacher weights and data).")

    // Transfer.
    static let from = OptionSpec("from", .text, "The old model: a run folder, a model file (.safetensors) or any ONNX classifier (.onnx, such as a PyTorch model exported with torch.onnx); or a sentence encoder's folder (tokenizer.json with a Hugging Face BERT such as all-MiniLM-L6-v2, or a distill text run), which gets a new head on its embedding for the labelled texts of --data.")
    static let strategy = OptionSpec("strategy", .choices(TransferStrategy.allCases.map(\.rawValue) + ["head", "finetune-equal", "all"]),
                                     "Strategies, comma-separated (head = freeze; finetune-equal: backbone at the head's rate), or 'all'.")
    static let head = OptionSpec("head", .text, "The old model's classifier layer to replace: a module path (default: its last Linear layer, classifier.3 in cnn-student, fc in the ResNets), or for an ONNX model a Gemm or MatMul node's name or output (default: the last one).")
    static let freeze = OptionSpec("freeze", .text, "Backbone layers kept frozen in every strategy but scratch, comma-separated: module paths of a zoo model, or an ONNX model's node names or outputs (NAME* for a prefix), which freeze the initializers those nodes read.")
    static let oldClasses = OptionSpec("old-classes", .numbers(values: 0...9_999, maximumCount: 10_000), "Classes of the old task (for measuring forgetting), a range or list.")
    static let backboneLrScale = OptionSpec("backbone-lr-scale", .number(0...100), "Backbone learning rate relative to the head's.")
    static let lwfWeight = OptionSpec("lwf-weight", .number(0...1_000_000), "Weight of LwF's old-task term (KD at T = 2 on the old head's logits; for a sentence encoder, its embedding held to the original's). Default 1.")
    static let steps = OptionSpec("steps", .integer(1...10_000_000), "Training steps.")
    static let seeds = OptionSpec("seeds", .numbers(values: 0...Int(Int32.max), maximumCount: 1_000),
                                  "Seeds: one number, or a range like 0-9; one run each (OUT/seed-N for train and distill), results as mean ± std.")

    static let textDataOptions = [textSeparator, textColumn, maxTokens]
    static let textStudentOptions = [layers, heads, feedForward, dropout, initFromTeacher, initLayers, hiddenWeight, attentionWeight, layerMap]
    static let servedTeacherOptions = [queryBatch, concurrency, requestsPerSecond, maxQueries, queryTimeout, teacherTokenEnv, teacherTokenFile, teacherCAFile, teacherAnswers]
    static let teacherPreprocessingOptions = [teacherInputSize, teacherMean, teacherStd, teacherChannelOrder]
    static let dataOptions = [data, testData, testFraction, imageSize, channels, inputs, labels, classes, labelsPerClass, validationFraction]
    static let trainingOptions = [epochs, batch, lr, seed, optimizer, schedule, weightDecay, clipNorm, warmupSteps, onNonFinite, matmulPrecision, classWeights, patience, skipBadFiles, noSyncBatchNorm, noOverlapAllReduce, deterministic,
                                  seeds, checkpointEvery, out, resume, dryRun]
    static let outputOptions = [quiet, json, threads]
}
