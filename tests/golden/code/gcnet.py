def forward(self, x):
    check_input = attnspec_runtime_check_input(x, 'x', (('B', None), ('C', 64), ('H', None), ('W', None)));  x = None
    key_conv1x1 = self.key_conv1x1(check_input)
    flatten = key_conv1x1.flatten(2);  key_conv1x1 = None
    softmax = torch.softmax(flatten, dim = -1);  flatten = None
    flatten_1 = check_input.flatten(2)
    unsqueeze = flatten_1.unsqueeze(1);  flatten_1 = None
    unsqueeze_1 = softmax.unsqueeze(-1);  softmax = None
    matmul = torch.matmul(unsqueeze, unsqueeze_1);  unsqueeze = unsqueeze_1 = None
    flatten_2 = matmul.flatten(1);  matmul = None
    transform_conv1x1 = self.transform_conv1x1(flatten_2);  flatten_2 = None
    transform_layernorm = self.transform_layernorm(transform_conv1x1);  transform_conv1x1 = None
    relu = torch.relu(transform_layernorm);  transform_layernorm = None
    transform_conv1x1_2 = self.transform_conv1x1_2(relu);  relu = None
    getitem = transform_conv1x1_2[(slice(None, None, None), slice(None, None, None), None, None)];  transform_conv1x1_2 = None
    add = check_input + getitem;  check_input = getitem = None
    return add
