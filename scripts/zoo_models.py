"""PyTorch definitions of Distill's model zoo, with the same parameter names, shapes and
layer order as Sources/NeuralNet/ModelZoo.swift, so that a state_dict moves between the two
unchanged. Used by the fixture scripts and by anyone training a teacher in PyTorch:

    from zoo_models import make
    model = make("resnet20", classes=10, input_channels=1)
"""
from collections import OrderedDict

import torch
import torch.nn as nn


def scaled(channels, width):
    # Swift's rounded() rounds halves away from zero; so does this.
    return max(1, int(channels * width + 0.5))


def mlp(classes=10, input_channels=1, input_size=28, hidden=(128,), **_):
    layers, width = [nn.Flatten()], input_channels * input_size * input_size
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def lenet5(classes=10, input_channels=1, input_size=28, width=1.0, **_):
    c1, c2 = scaled(6, width), scaled(16, width)
    side = (input_size // 2 - 4) // 2
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(input_channels, c1, 5, padding=2)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(c1, c2, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(c2 * side * side, 120)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(120, 84)), ("relu4", nn.ReLU()), ("fc3", nn.Linear(84, classes)),
    ]))


class FeaturesClassifier(nn.Module):
    def __init__(self, features, classifier):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x):
        return self.classifier(self.features(x))


def cnn_teacher(classes=10, input_channels=1, input_size=28, width=1.0, **_):
    c1, c2, c3, h = scaled(32, width), scaled(64, width), scaled(128, width), scaled(256, width)
    features = nn.Sequential(
        nn.Conv2d(input_channels, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(), nn.MaxPool2d(2))
    side = input_size // 4
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(c3 * side * side, h), nn.ReLU(), nn.Dropout(0.3), nn.Linear(h, classes))
    return FeaturesClassifier(features, classifier)


def cnn_student(classes=10, input_channels=1, input_size=28, width=1.0, **_):
    c1, c2, h = scaled(8, width), scaled(16, width), scaled(64, width)
    features = nn.Sequential(
        nn.Conv2d(input_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    side = input_size // 4
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, h), nn.ReLU(), nn.Linear(h, classes))
    return FeaturesClassifier(features, classifier)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet(nn.Module):
    def __init__(self, depth, classes=10, input_channels=1, width=1.0, **_):
        super().__init__()
        n = (depth - 2) // 6
        w = [scaled(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(input_channels, w[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        stage = lambda cin, cout, s: nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout, s if i == 0 else 1) for i in range(n)])
        self.layer1, self.layer2, self.layer3 = stage(w[0], w[0], 1), stage(w[0], w[1], 2), stage(w[1], w[2], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w[2], classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class WideBasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.convShortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        a = torch.relu(self.bn1(x))
        out = self.conv2(torch.relu(self.bn2(self.conv1(a))))
        return out + (self.convShortcut(a) if self.convShortcut is not None else x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, classes=10, input_channels=1, width=1.0, **_):
        super().__init__()
        n = (depth - 4) // 6
        w = [scaled(c, width) for c in (16, 16 * widen, 32 * widen, 64 * widen)]
        self.conv1 = nn.Conv2d(input_channels, w[0], 3, padding=1, bias=False)
        stage = lambda cin, cout, s: nn.Sequential(*[WideBasicBlock(cin if i == 0 else cout, cout, s if i == 0 else 1) for i in range(n)])
        self.block1, self.block2, self.block3 = stage(w[0], w[1], 1), stage(w[1], w[2], 2), stage(w[2], w[3], 2)
        self.bn1 = nn.BatchNorm2d(w[3])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w[3], classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        layers = []
        if expansion != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes=10, input_channels=1, width=1.0, **_):
        super().__init__()
        c = scaled(32, width)
        layers = [nn.Sequential(nn.Conv2d(input_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU6())]
        for t, w, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(c, scaled(w, width), s if i == 0 else 1, t))
                c = scaled(w, width)
        last = scaled(256, width)
        layers += [nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x):
        return self.classifier(self.features(x))


def make(name, **options):
    builders = {
        "mlp": mlp, "lenet5": lenet5, "cnn-teacher": cnn_teacher, "cnn-student": cnn_student,
        "resnet8": lambda **o: ResNet(8, **o), "resnet20": lambda **o: ResNet(20, **o),
        "resnet32": lambda **o: ResNet(32, **o), "resnet56": lambda **o: ResNet(56, **o),
        "wrn-16-2": lambda **o: WideResNet(16, 2, **o), "wrn-40-2": lambda **o: WideResNet(40, 2, **o),
        "mobilenetv2": MobileNetV2,
    }
    return builders[name](**options)
