"""Small networks written the way their public counterparts are, in plain torch (no torchvision, no timm).

Each keeps its public counterpart's block structure (module names, layer order, where the residual, concat,
gating or reshape happens) at widths small enough for the whole zoo to run in minutes on two CPU cores.
Every factory below is a model spec: ``tests.zoo.architectures:resnet18`` and so on. ``ZOO`` maps a name to a
:class:`ZooModel`: the factory, one sample's shape, the number of classes, the input dtype and how a user would
hand the model over (``factory``, or ``torchscript``: the same module saved with ``torch.jit.script``).

Hugging Face models (``ViTForImageClassification`` from a config) are not here yet: ``transformers`` is not
installed in this environment.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGE = (3, 16, 16)
CLASSES = 10

SEED = 0


def zoo_factory(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Make ``build`` a deterministic factory: weights from a fixed seed (the caller's random state untouched), norm
    layers given non-trivial statistics and affine parameters (as a trained network has), eval mode."""

    @functools.wraps(build)
    def factory() -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(SEED)
            module = build()
            with torch.no_grad():
                for m in module.modules():
                    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                        m.running_mean.normal_(0.0, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
                    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm) and m.weight is not None:
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.normal_(0.0, 0.1)
        return module.eval()

    return factory


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: ``build()`` returns a fresh module (weights from the current torch seed)."""

    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    classes: int = CLASSES
    dtype: torch.dtype = torch.float32
    fmt: str = "factory"  # "factory" (tests.zoo.architectures:NAME), "torchscript" (a saved .ts file) or
    # "huggingface" (a save_pretrained folder of build().model)
    about: str = ""

    @property
    def factory(self) -> str:
        return f"{__name__}:{self.build.__name__}"


# --- ResNet (torchvision.models.resnet layout) ------------------------------------------------------------------


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)  # torchvision's v1.5: the stride sits on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int], widths: list[int],
                 num_classes: int = CLASSES):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@zoo_factory
def resnet18() -> nn.Module:
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 1x1 strided downsample on the shortcut."""
    return ResNet(BasicBlock, [2, 2, 2, 2], [8, 16, 32, 64])


@zoo_factory
def resnet50() -> nn.Module:
    """ResNet-50's Bottleneck (1x1 -> 3x3 -> 1x1, expansion 4), [2, 2, 2, 2] blocks of it."""
    return ResNet(Bottleneck, [2, 2, 2, 2], [4, 8, 16, 32])


# --- MobileNetV2 (torchvision.models.mobilenetv2 layout) ---------------------------------------------------------


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 activation: type[nn.Module] | None = nn.ReLU6):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, kernel=1))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, oup, 1, bias=False),  # pointwise-linear
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    # t (expansion), c (channels), n (repeats), s (stride): torchvision's table at small widths
    SETTING = [[1, 8, 1, 1], [6, 12, 2, 2], [6, 16, 2, 2], [6, 24, 1, 1]]

    def __init__(self, num_classes: int = CLASSES, first: int = 8, last: int = 64):
        super().__init__()
        features: list[nn.Module] = [Conv2dNormActivation(3, first, stride=2)]
        cin = first
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(Conv2dNormActivation(cin, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


@zoo_factory
def mobilenet_v2() -> nn.Module:
    """MobileNetV2: inverted residuals (1x1 expand, 3x3 depthwise, 1x1 linear projection), ReLU6."""
    return MobileNetV2()


# --- EfficientNet (torchvision.models.efficientnet layout: MBConv with SqueezeExcitation, SiLU) -------------------


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = cin * expand
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(Conv2dNormActivation(cin, hidden, kernel=1, activation=nn.SiLU))
        layers += [
            Conv2dNormActivation(hidden, hidden, kernel=kernel, stride=stride, groups=hidden, activation=nn.SiLU),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            Conv2dNormActivation(hidden, cout, kernel=1, activation=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out  # (stochastic depth is the identity in eval mode)


class EfficientNet(nn.Module):
    # expand, kernel, stride, cin, cout, repeats: EfficientNet-B0's first stages at small widths
    SETTING = [(1, 3, 1, 8, 8, 1), (6, 3, 2, 8, 12, 2), (6, 5, 2, 12, 16, 2)]

    def __init__(self, num_classes: int = CLASSES, last: int = 64):
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, 8, stride=2, activation=nn.SiLU)]
        for expand, kernel, stride, cin, cout, repeats in self.SETTING:
            stage = [MBConv(cin if i == 0 else cout, cout, expand, kernel, stride if i == 0 else 1) for i in range(repeats)]
            layers.append(nn.Sequential(*stage))
        layers.append(Conv2dNormActivation(self.SETTING[-1][4], last, kernel=1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@zoo_factory
def efficientnet() -> nn.Module:
    """EfficientNet-style: MBConv with a sigmoid-gated SqueezeExcitation, SiLU everywhere."""
    return EfficientNet()


# --- GoogLeNet (torchvision.models.googlenet layout, without the auxiliary heads) ---------------------------------


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))  # torchvision's 3x3
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool_proj, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.conv1 = BasicConv2d(3, 8, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(8, 8, kernel_size=1)
        self.conv3 = BasicConv2d(8, 16, kernel_size=3, padding=1)
        self.inception3a = Inception(16, 8, 8, 12, 4, 4, 4)  # -> 28
        self.inception3b = Inception(28, 12, 8, 12, 4, 8, 8)  # -> 40
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(40, 12, 8, 16, 4, 8, 8)  # -> 44
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(44, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.maxpool1(self.conv1(x))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


@zoo_factory
def googlenet() -> nn.Module:
    """GoogLeNet: Inception blocks whose four branches are concatenated along channels."""
    return GoogLeNet()


# --- DenseNet (torchvision.models.densenet layout) ----------------------------------------------------------------


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4, blocks: tuple[int, ...] = (2, 2), init: int = 8, bn_size: int = 2,
                 num_classes: int = CLASSES):
        super().__init__()
        features = nn.Sequential()
        features.add_module("conv0", nn.Conv2d(3, init, 7, stride=2, padding=3, bias=False))
        features.add_module("norm0", nn.BatchNorm2d(init))
        features.add_module("relu0", nn.ReLU(inplace=True))
        features.add_module("pool0", nn.MaxPool2d(3, stride=2, padding=1))
        channels = init
        for i, n in enumerate(blocks):
            features.add_module(f"denseblock{i + 1}", DenseBlock(n, channels, growth, bn_size))
            channels += n * growth
            if i != len(blocks) - 1:
                features.add_module(f"transition{i + 1}", Transition(channels, channels // 2))
                channels //= 2
        features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features = features
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.features(x), inplace=True)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))


@zoo_factory
def densenet() -> nn.Module:
    """DenseNet: every layer reads the concatenation of all earlier feature maps; transitions halve them."""
    return DenseNet()


# --- U-Net (the common milesial/Pytorch-UNet layout), per-pixel scores averaged into class scores ------------------


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, mid: int | None = None):
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upsample (ConvTranspose2d, or bilinear), concatenate the encoder's skip, DoubleConv."""

    def __init__(self, cin: int, cout: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        dy, dx = x2.size(2) - x1.size(2), x2.size(3) - x1.size(3)
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class UNet(nn.Module):
    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.inc = DoubleConv(3, 8)
        self.down1 = Down(8, 16)
        self.down2 = Down(16, 32)
        self.up1 = Up(32 + 16, 16, bilinear=True)  # bilinear upsample of 32, skip 16
        self.up2 = Up(16, 8, bilinear=False)  # ConvTranspose2d 16 -> 8, skip 8
        self.outc = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x = self.up2(self.up1(x3, x2), x1)
        return self.outc(x).mean(dim=(2, 3))  # per-pixel class scores, averaged: an image classifier


@zoo_factory
def unet() -> nn.Module:
    """U-Net: encoder, decoder with skip concatenation, bilinear Upsample and ConvTranspose2d, 1x1 per-pixel head."""
    return UNet()


# --- VGG with GroupNorm ---------------------------------------------------------------------------------------------


class VGG(nn.Module):
    def __init__(self, cfg: tuple = (8, "M", 16, "M", 32, 32, "M"), groups: int = 4, num_classes: int = CLASSES):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.GroupNorm(groups, v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(cin * 4, 64), nn.ReLU(True), nn.Dropout(),
            nn.Linear(64, 64), nn.ReLU(True), nn.Dropout(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@zoo_factory
def vgg_groupnorm() -> nn.Module:
    """VGG (torchvision's features/avgpool/classifier) with GroupNorm(4) after every convolution."""
    return VGG()


# --- Vision Transformers ------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, patch: int = 4, cin: int = 3, dim: int = 32):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, N, C


class Attention(nn.Module):
    """timm's Attention: one qkv Linear, reshaped to heads."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, torch_attention: bool):
        super().__init__()
        self.torch_attention = torch_attention
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True) if torch_attention else Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        y = self.attn(y, y, y, need_weights=False)[0] if self.torch_attention else self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, torch_attention: bool, dim: int = 32, depth: int = 2, num_heads: int = 4,
                 mlp_ratio: float = 2.0, patch: int = 4, num_classes: int = CLASSES):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, IMAGE[0], dim)
        n = (IMAGE[1] // patch) * (IMAGE[2] // patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.pos_drop = nn.Dropout(0.0)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, torch_attention) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@zoo_factory
def vit_timm() -> nn.Module:
    """ViT as timm writes it: patch-embedding conv, cls token, qkv Linear reshaped to 4 heads, GELU MLP, LayerNorm."""
    return VisionTransformer(torch_attention=False)


@zoo_factory
def vit_mha() -> nn.Module:
    """The same ViT with torch's nn.MultiheadAttention (in_proj_weight, out_proj) in each block."""
    return VisionTransformer(torch_attention=True)


# --- sequences and tabular data -----------------------------------------------------------------------------------

SEQ_CONV = (4, 32)  # [C, L]
SEQ_RNN = (12, 6)  # [T, F]
TABULAR = (20,)  # [D]
TOKENS = (16,)  # [L] integer ids
VOCAB = 50


class ConvBlock1d(nn.Module):
    """A residual temporal block: two Conv1d + BatchNorm1d, 1x1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, kernel, padding=kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.shortcut = nn.Conv1d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SeqConvNet(nn.Module):
    def __init__(self, cin: int = SEQ_CONV[0], num_classes: int = CLASSES):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(cin, 16, 5, padding=2, bias=False), nn.BatchNorm1d(16), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool1d(2)
        self.block1 = ConvBlock1d(16, 16)
        self.block2 = ConvBlock1d(16, 32)
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.pool(self.stem(x)))))


@zoo_factory
def conv1d_seq() -> nn.Module:
    """A 1-D CNN on sequences [N, C=4, L=32]: Conv1d stem, residual Conv1d blocks, global pooling, Linear."""
    return SeqConvNet()


class LSTMClassifier(nn.Module):
    def __init__(self, features: int = SEQ_RNN[1], hidden: int = 16, layers: int = 2, num_classes: int = CLASSES):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


@zoo_factory
def lstm() -> nn.Module:
    """A 2-layer LSTM on [N, T=12, F=6] (batch_first); the last step's output feeds a Linear."""
    return LSTMClassifier()


class GRUClassifier(nn.Module):
    def __init__(self, features: int = SEQ_RNN[1], hidden: int = 16, num_classes: int = CLASSES):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        return self.fc(h[-1])


@zoo_factory
def gru() -> nn.Module:
    """A GRU on [N, T=12, F=6] (batch_first); its final hidden state feeds a Linear."""
    return GRUClassifier()


class TabularMLP(nn.Module):
    def __init__(self, features: int = TABULAR[0], hidden: int = 64, num_classes: int = CLASSES):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.act1 = nn.GELU()
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.act2 = nn.GELU()
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act1(self.norm1(self.fc1(x))))
        return self.out(self.act2(self.norm2(self.fc2(x))))


@zoo_factory
def mlp_tabular() -> nn.Module:
    """An MLP on tabular rows [N, D=20]: Linear -> LayerNorm -> GELU, twice, then a Linear head."""
    return TabularMLP()


# --- structures the issue names -----------------------------------------------------------------------------------


class DWSepConcat(nn.Module):
    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.stem = Conv2dNormActivation(3, 16, stride=2, activation=nn.ReLU)
        self.dw = Conv2dNormActivation(16, 16, groups=16, activation=nn.ReLU)  # depthwise 3x3
        self.pw = Conv2dNormActivation(16, 32, kernel=1, activation=nn.ReLU)  # pointwise
        self.side = Conv2dNormActivation(16, 16, kernel=1, activation=nn.ReLU)  # side branch from the stem
        self.dw2 = Conv2dNormActivation(48, 48, groups=48, activation=nn.ReLU)  # depthwise over the concatenation
        self.pw2 = Conv2dNormActivation(48, 32, kernel=1, activation=nn.ReLU)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.pw(self.dw(x)), self.side(x)], dim=1)
        return self.fc(torch.flatten(self.pool(self.pw2(self.dw2(x))), 1))


@zoo_factory
def dwsep_concat() -> nn.Module:
    """Depthwise-separable blocks whose output is concatenated with a 1x1 side branch, then a depthwise-separable
    block over the concatenation (the issue's "depthwise-separable CNN with a concatenated side branch")."""
    return DWSepConcat()


class TextCNN(nn.Module):
    def __init__(self, vocab: int = VOCAB, dim: int = 16, num_classes: int = CLASSES):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, 32, 3, padding=1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)  # N, dim, L
        x = F.relu(self.conv(x))
        return self.fc(x.amax(dim=2))


@zoo_factory
def text_cnn() -> nn.Module:
    """A text classifier on integer token ids [N, L=16]: Embedding, Conv1d, max over time, Linear."""
    return TextCNN()


@zoo_factory
def hf_vit() -> nn.Module:
    """A Hugging Face ViTForImageClassification built from a config (4 heads of 8, 2 layers), as the one-tensor
    classifier pruner_core.io.hf wraps it in; the zoo saves ``.model`` with save_pretrained and loads that folder."""
    from transformers import ViTConfig, ViTForImageClassification

    from pruner_core.io.hf import Logits

    config = ViTConfig(image_size=IMAGE[1], patch_size=4, num_channels=IMAGE[0], hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64, num_labels=CLASSES, attn_implementation="eager")
    return Logits(ViTForImageClassification(config), "pixel_values")


ZOO: dict[str, ZooModel] = {
    "resnet18": ZooModel(resnet18, IMAGE, about="BasicBlock, 1x1 downsample"),
    "resnet50": ZooModel(resnet50, IMAGE, about="Bottleneck"),
    "mobilenet_v2": ZooModel(mobilenet_v2, IMAGE, about="inverted residual, depthwise"),
    "efficientnet": ZooModel(efficientnet, IMAGE, about="SE (sigmoid gating) + SiLU"),
    "googlenet": ZooModel(googlenet, IMAGE, about="inception branches concatenated"),
    "densenet": ZooModel(densenet, IMAGE, about="dense concatenation"),
    "unet": ZooModel(unet, IMAGE, about="encoder/decoder, skip concat, Upsample + ConvTranspose2d"),
    "vgg_groupnorm": ZooModel(vgg_groupnorm, IMAGE, about="GroupNorm"),
    "vit_timm": ZooModel(vit_timm, IMAGE, about="qkv Linear reshaped to heads, GELU MLP, LayerNorm, cls token"),
    "vit_mha": ZooModel(vit_mha, IMAGE, about="nn.MultiheadAttention"),
    "conv1d_seq": ZooModel(conv1d_seq, SEQ_CONV, about="Conv1d on [N, C, L]"),
    "lstm": ZooModel(lstm, SEQ_RNN, about="LSTM on [N, T, F]"),
    "gru": ZooModel(gru, SEQ_RNN, about="GRU on [N, T, F]"),
    "mlp_tabular": ZooModel(mlp_tabular, TABULAR, about="GELU + LayerNorm on [N, D]"),
    "dwsep_concat": ZooModel(dwsep_concat, IMAGE, about="depthwise-separable + concatenated side branch"),
    "text_cnn": ZooModel(text_cnn, TOKENS, dtype=torch.long, about="Embedding on integer token ids [N, L]"),
    "resnet18_torchscript": ZooModel(resnet18, IMAGE, fmt="torchscript", about="ResNet-18 saved with torch.jit.script"),
    "hf_vit": ZooModel(hf_vit, IMAGE, fmt="huggingface", about="Hugging Face ViT folder (save_pretrained)"),
}


def build(name: str) -> nn.Module:
    """The zoo model ``name`` as its factory spec returns it (seeded weights, eval mode)."""
    return ZOO[name].build()
